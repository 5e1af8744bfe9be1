/**
 * Op by op against the reference backend (the oracle): every op of the graph runs natively on
 * exactly the inputs the reference computed (CpuModel.stepWithInputs), on every kernel path this
 * CPU has, and its output is compared with the reference's. Ternary linear ops, embeddings, adds
 * and the squared-ReLU gate are integer-exact or single-rounding ops: they must match bit for
 * bit. The rest (different but equally valid summation orders or libm calls) get named tolerances.
 */
import { type CompiledModel, type GraphOp, loadModel } from "@bitnet-ts/engine-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanup, cpuModel, fixture, LONG_PROMPT } from "../test/models";
import { loadBinding } from "./loader";

afterAll(cleanup);

/** Largest |ours − ref| / max(max|ref|, 1e-6) per op kind: relative to the buffer's scale. */
const TOLERANCE: Record<string, number> = {
  embed: 0,
  linear_ternary: 0, // exact integer dot products, scales applied in the reference's order
  linear_float: 2e-6, // f32 sums in SIMD lanes
  rms_norm: 1e-6, // Σx² in double: in SIMD lanes instead of in order (measured: 0)
  rope: 1e-6, // sin/cos from libm instead of V8's fdlibm (measured: 0)
  attention: 1e-6, // exp from libm / in double (measured: 0)
  add: 0,
  glu_relu2: 0,
  glu_silu: 1e-6, // exp (measured: 0)
  output: 1e-6, // f16 head: f32 sums in SIMD lanes (measured: 5.3e-7)
};

function kindOf(op: GraphOp, model: CompiledModel): string {
  if (op.kind === "linear") {
    const type = model.description.tensors.get(op.weight)!.info.type.name;
    return ["I2_S", "TQ2_0", "TQ1_0"].includes(type) ? "linear_ternary" : "linear_float";
  }
  if (op.kind === "glu") {
    return op.activation === "relu2" ? "glu_relu2" : "glu_silu";
  }
  return op.kind;
}

function relativeError(ours: Float32Array, ref: Float32Array): number {
  let scale = 1e-6;
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    scale = Math.max(scale, Math.abs(ref[i]!));
    worst = Math.max(worst, Math.abs(ours[i]! - ref[i]!));
  }
  return Number.isNaN(worst) ? Number.POSITIVE_INFINITY : worst / scale;
}

const paths = loadBinding().availablePaths();

// A prompt, a decode step, then steps of 3, 5 and 8 tokens: every token-count variant of the
// multi-token kernels (VNNI below the AMX threshold, AMX from it) meets the reference.
const STEPS: readonly (readonly number[])[] = [
  LONG_PROMPT,
  [1234],
  [578, 4062, 14198],
  [311, 1057, 9906, 264, 1296],
  [791, 3363, 315, 9822, 374, 12366, 13, 578],
];

describe.each(["tiny-i2s", "tiny-tq2", "tiny-tq1"])(
  "%s: native ops equal the reference ops",
  (name) => {
    let reference: CompiledModel;
    const steps: Awaited<ReturnType<CompiledModel["step"]>>[] = [];

    beforeAll(async () => {
      reference = await loadModel(await fixture(name), { backend: "reference", contextLength: 64 });
      const graph = reference.description.graph;
      const buffers = Object.keys(graph.buffers).filter((b) => b !== graph.logits);
      const seq = reference.createSequence();
      for (const tokens of STEPS) {
        steps.push(await reference.step([{ sequence: seq, tokens, logits: "all" }], { buffers }));
      }
    }, 120_000);

    afterAll(() => reference.dispose());

    it.each(paths)(
      "on the %s path (prefill of 20, decode of 1, then 3 more)",
      { timeout: 60_000 },
      async (path) => {
        const native = await cpuModel(name, { kernelPath: path, threads: 2 });
        const graph = reference.description.graph;
        const worst: Record<string, number> = {};
        const seq = native.createSequence();
        for (const [i, tokens] of STEPS.entries()) {
          const ref = steps[i]!;
          const nat = await native.stepWithInputs(
            [{ sequence: seq, tokens, logits: "all" }],
            ref.captured!,
            {
              buffers: [...ref.captured!.keys()],
            },
          );
          for (const op of graph.ops) {
            const kind = kindOf(op, reference);
            const ours = op.kind === "output" ? nat.runs[0]!.logits : nat.captured!.get(op.out)!;
            const theirs = op.kind === "output" ? ref.runs[0]!.logits : ref.captured!.get(op.out)!;
            worst[kind] = Math.max(worst[kind] ?? 0, relativeError(ours, theirs));
          }
        }
        for (const [kind, error] of Object.entries(worst)) {
          expect(error, `${name} ${path} ${kind}`).toBeLessThanOrEqual(TOLERANCE[kind]!);
        }
        expect(Object.keys(worst)).toEqual(
          expect.arrayContaining([
            "add",
            "attention",
            "embed",
            "linear_ternary",
            "output",
            "rms_norm",
            "rope",
          ]),
        );
        await native.dispose();
      },
    );
  },
);
