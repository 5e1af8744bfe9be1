/** The op-by-op comparison (op-by-op.ts) finds what it should: a perturbed op, by kind, buffer and step. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CaptureRequest, CompiledModel, SequenceRun, StepOutput } from "../backend";
import { loadModel } from "../load";
import {
  captureReference,
  compareOpByOp,
  decodeStepOutputs,
  EXACT_OP_TOLERANCES,
  encodeStepOutputs,
  OP_KINDS,
  opKind,
  opViolations,
  type ReferenceCapture,
  relativeError,
} from "./op-by-op";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "op-by-op-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const STEPS = [[128000, 791, 6864, 315], { tokens: [9822], logits: "last" as const }];

/**
 * The reference itself as a candidate: its stepWithInputs ignores the inputs (the same
 * computation gives the same values) and then lets `perturb` change what it returns.
 */
function asCandidate(
  model: CompiledModel,
  perturb: (step: number, out: StepOutput) => void,
  seen: ReadonlyMap<string, Float32Array>[] = [],
): CompiledModel {
  let step = 0;
  const stepWithInputs = async (
    runs: readonly SequenceRun[],
    inputs: ReadonlyMap<string, Float32Array>,
    capture: CaptureRequest,
  ): Promise<StepOutput> => {
    (seen as ReadonlyMap<string, Float32Array>[]).push(inputs);
    const out = await model.step(runs, capture);
    perturb(step++, out);
    return out;
  };
  return new Proxy(model, {
    get(target, prop) {
      if (prop === "stepWithInputs") {
        return stepWithInputs;
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

describe("op-by-op comparison", () => {
  let reference: CompiledModel;
  let candidate: CompiledModel;
  let capture: ReferenceCapture;

  beforeAll(async () => {
    const file = path.join(tmp, "tiny-i2s.gguf");
    await writeFixture(PRESETS["tiny-i2s"]!, file);
    reference = await loadModel(file, { backend: "reference", contextLength: 64 });
    candidate = await loadModel(file, { backend: "reference", contextLength: 64 });
    capture = await captureReference(reference, STEPS);
  });

  afterAll(async () => {
    await reference.dispose();
    await candidate.dispose();
  });

  it("relative error: worst difference over the buffer's largest magnitude; NaN or a length mismatch is infinite", () => {
    expect(relativeError(Float32Array.of(1, -4), Float32Array.of(1, -4))).toBe(0);
    expect(relativeError(Float32Array.of(1.5, -4), Float32Array.of(1, -4))).toBe(0.5 / 4);
    expect(relativeError(Float32Array.of(Number.NaN), Float32Array.of(1))).toBe(
      Number.POSITIVE_INFINITY,
    );
    expect(relativeError(Float32Array.of(1), Float32Array.of(1, 2))).toBe(Number.POSITIVE_INFINITY);
  });

  it("captures every buffer but the logits, on every step", () => {
    const graph = reference.description.graph;
    expect(capture.outputs).toHaveLength(2);
    for (const out of capture.outputs) {
      expect(out.captured!.size).toBe(Object.keys(graph.buffers).length - 1);
      expect(out.captured!.has(graph.logits)).toBe(false);
    }
    expect(capture.outputs[0]!.runs[0]!.rows).toBe(4);
    expect(capture.outputs[1]!.runs[0]!.rows).toBe(1);
    expect(new Set(graph.ops.map((op) => opKind(op, reference.description)))).toEqual(
      new Set([
        "embed",
        "rms_norm",
        "linear_ternary",
        "rope",
        "attention",
        "add",
        "glu_relu2",
        "output",
      ]),
    );
    expect(OP_KINDS).toEqual(
      expect.arrayContaining([
        ...new Set(graph.ops.map((op) => opKind(op, reference.description))),
      ]),
    );
  });

  it("the same computation agrees bit for bit, and every step gets all the reference's buffers", async () => {
    const seen: ReadonlyMap<string, Float32Array>[] = [];
    const worst = await compareOpByOp(
      asCandidate(candidate, () => {}, seen),
      capture,
    );
    expect(opViolations(worst, EXACT_OP_TOLERANCES)).toEqual([]);
    expect([...worst.values()].every((e) => e.error === 0)).toBe(true);
    expect(seen).toEqual(capture.outputs.map((o) => o.captured));
    expect(candidate.sequenceCount).toBe(0);
  });

  it("names the kind, buffer and step of a perturbed op, and the logits", async () => {
    const worst = await compareOpByOp(
      asCandidate(candidate, (step, out) => {
        if (step === 1) {
          const v = (out.captured as Map<string, Float32Array>).get("ffn_out-1")!;
          v[3] = v[3]! + 1e-3 * Math.max(...v.map(Math.abs));
          out.runs[0]!.logits[7] = Number.NaN;
        }
      }),
      capture,
    );
    const lines = opViolations(worst, { ...EXACT_OP_TOLERANCES, output: 1 });
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^linear_ternary: 1\.00e-3 > 0 \(at ffn_out-1, step 1\)$/);
    expect(lines[1]).toMatch(/^output: Infinity > 1 \(at result_output, step 1\)$/);
  });

  it("a capture kept as bytes comes back bit for bit, and a perturbed op is found against it", async () => {
    const bytes = encodeStepOutputs(capture.outputs);
    const kept = decodeStepOutputs(bytes);
    const sameBytes = (a: Float32Array, b: Float32Array) =>
      Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
        Buffer.from(b.buffer, b.byteOffset, b.byteLength),
      );
    expect(kept).toHaveLength(capture.outputs.length);
    for (const [i, out] of kept.entries()) {
      const want = capture.outputs[i]!;
      expect(out.runs[0]!.rows).toBe(want.runs[0]!.rows);
      expect(out.runs[0]!.sequence).toBe(want.runs[0]!.sequence);
      expect(sameBytes(out.runs[0]!.logits, want.runs[0]!.logits)).toBe(true);
      expect([...out.captured!.keys()]).toEqual([...want.captured!.keys()]);
      for (const [name, v] of out.captured!) {
        expect(sameBytes(v, want.captured!.get(name)!), name).toBe(true);
      }
    }
    const worst = await compareOpByOp(
      asCandidate(candidate, (step, out) => {
        if (step === 0) {
          const v = (out.captured as Map<string, Float32Array>).get("attn_norm-0")!;
          v[1] = v[1]! + 0.5 * Math.max(...v.map(Math.abs));
        }
      }),
      { ...capture, outputs: kept },
    );
    expect(opViolations(worst, EXACT_OP_TOLERANCES)).toEqual([
      "rms_norm: 5.00e-1 > 0 (at attn_norm-0, step 0)",
    ]);
  });

  it("refuses bytes that are not an encoded capture", () => {
    const bytes = encodeStepOutputs(capture.outputs);
    expect(() => decodeStepOutputs(bytes.subarray(0, 3))).toThrow(/not an encoded capture/);
    expect(() => decodeStepOutputs(bytes.subarray(0, bytes.length - 4))).toThrow(
      /runs past the end/,
    );
    const longer = new Uint8Array(bytes.length + 8);
    longer.set(bytes);
    expect(() => decodeStepOutputs(longer)).toThrow(/8 bytes left over/);
    expect(() => decodeStepOutputs(Uint8Array.of(255, 255, 255, 255))).toThrow(
      /header runs past the end/,
    );
    const json = (text: string) => {
      const body = new TextEncoder().encode(text);
      const out = new Uint8Array(4 + body.length);
      new DataView(out.buffer).setUint32(0, body.length, true);
      out.set(body, 4);
      return out;
    };
    expect(() => decodeStepOutputs(json("{"))).toThrow(/header is not JSON/);
    expect(() => decodeStepOutputs(json('{"steps":1}'))).toThrow(/not a list of steps/);
    expect(() => decodeStepOutputs(json("[null]"))).toThrow(/not a list of steps/);
  });

  it("refuses a candidate without stepWithInputs", async () => {
    await expect(compareOpByOp(candidate, capture)).rejects.toThrow(/no stepWithInputs/);
  });
});
