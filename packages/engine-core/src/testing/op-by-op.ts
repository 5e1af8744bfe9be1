/**
 * Op by op against the reference backend (the oracle), as a reusable vitest suite: the reference
 * runs a few steps and keeps every intermediate buffer; each candidate backend then runs the
 * same steps through `stepWithInputs`, with every op's inputs overwritten by the reference's
 * values, so each op is checked in isolation (an error in one op cannot hide in, or be blamed
 * on, another). Errors are compared per op kind against named tolerances: integer-exact ops get
 * 0, the rest a bound relative to the buffer's scale.
 *
 * @example
 * import { describeOpByOp } from "@bitnet-ts/engine-core/testing";
 * describeOpByOp("tiny-i2s", {
 *   reference: () => loadModel(file, { backend: "reference", contextLength: 64 }),
 *   candidates: [{ name: "my backend", load: () => myBackend.compile(description) }],
 *   steps: [[128000, 791, 6864], [315]],
 *   tolerances: { ...EXACT_OP_TOLERANCES, rms_norm: 1e-6, output: 1e-5 },
 * });
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CompiledModel, StepOutput } from "../backend";
import type { GraphOp } from "../graph";
import type { ModelDescription } from "../model";

/**
 * What an op is compared as: the graph's op kinds, with linear split by weight type (ternary
 * weights are integer dot products, float weights are float sums) and glu by activation.
 */
export type OpKind =
  | "embed"
  | "rms_norm"
  | "linear_ternary"
  | "linear_float"
  | "rope"
  | "attention"
  | "add"
  | "glu_relu2"
  | "glu_silu"
  | "output";

export const OP_KINDS: readonly OpKind[] = [
  "embed",
  "rms_norm",
  "linear_ternary",
  "linear_float",
  "rope",
  "attention",
  "add",
  "glu_relu2",
  "glu_silu",
  "output",
];

/**
 * Largest allowed |candidate − reference| / max(max|reference|, 1e-6) over a buffer, per op
 * kind (0: bit for bit). Every kind is named so that a backend states each of its bounds.
 */
export type OpTolerances = Readonly<Record<OpKind, number>>;

/** Every op bit for bit: a starting point to loosen kind by kind. */
export const EXACT_OP_TOLERANCES: OpTolerances = Object.freeze({
  embed: 0,
  rms_norm: 0,
  linear_ternary: 0,
  linear_float: 0,
  rope: 0,
  attention: 0,
  add: 0,
  glu_relu2: 0,
  glu_silu: 0,
  output: 0,
});

const TERNARY_TYPES: ReadonlySet<string> = new Set(["I2_S", "TQ2_0", "TQ1_0"]);

/** The kind an op of `description`'s graph is compared as. */
export function opKind(op: GraphOp, description: ModelDescription): OpKind {
  switch (op.kind) {
    case "linear": {
      const type = description.tensors.get(op.weight)?.info.type.name ?? "";
      return TERNARY_TYPES.has(type) ? "linear_ternary" : "linear_float";
    }
    case "glu":
      return op.activation === "relu2" ? "glu_relu2" : "glu_silu";
    default:
      return op.kind;
  }
}

/**
 * max |ours − ref| / max(max |ref|, 1e-6): the worst error relative to the buffer's scale.
 * NaN anywhere, or a length mismatch, gives +∞.
 */
export function relativeError(ours: Float32Array, ref: Float32Array): number {
  if (ours.length !== ref.length) {
    return Number.POSITIVE_INFINITY;
  }
  let scale = 1e-6;
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i]!;
    const d = Math.abs(ours[i]! - r);
    if (Number.isNaN(d) || Number.isNaN(r)) {
      return Number.POSITIVE_INFINITY;
    }
    scale = Math.max(scale, Math.abs(r));
    worst = Math.max(worst, d);
  }
  return worst / scale;
}

/** One step of one sequence: its tokens and which rows get logits (default "all"). */
export interface OpByOpStep {
  readonly tokens: readonly number[];
  readonly logits?: "all" | "last";
}

function normalizeSteps(steps: readonly (OpByOpStep | readonly number[])[]): readonly OpByOpStep[] {
  return steps.map((s) => ("tokens" in s ? s : { tokens: s as readonly number[] }));
}

/** The reference's outputs of each step, with every buffer of the graph but the logits captured. */
export interface ReferenceCapture {
  readonly description: ModelDescription;
  readonly steps: readonly OpByOpStep[];
  readonly outputs: readonly StepOutput[];
}

/** Runs `steps` on the reference in one new sequence (freed afterwards), capturing every buffer. */
export async function captureReference(
  reference: CompiledModel,
  steps: readonly (OpByOpStep | readonly number[])[],
): Promise<ReferenceCapture> {
  const graph = reference.description.graph;
  const buffers = Object.keys(graph.buffers).filter((b) => b !== graph.logits);
  const normalized = normalizeSteps(steps);
  const seq = reference.createSequence();
  const outputs: StepOutput[] = [];
  for (const step of normalized) {
    const out = await reference.step(
      [{ sequence: seq, tokens: step.tokens, logits: step.logits ?? "all" }],
      { buffers },
    );
    outputs.push(out);
  }
  reference.freeSequence(seq);
  return { description: reference.description, steps: normalized, outputs };
}

/**
 * The reference's step outputs as bytes, for keeping a capture between runs (a CaptureStore): a
 * little-endian u32 length, that many bytes of JSON naming each step's sequence, rows and
 * buffers with their lengths, then every array's f32 values in that order.
 */
export function encodeStepOutputs(outputs: readonly StepOutput[]): Uint8Array {
  const arrays: Float32Array[] = [];
  const header = outputs.map((out) => {
    if (out.runs.length !== 1) {
      throw new Error(`a captured step has one run; this one has ${out.runs.length}`);
    }
    const run = out.runs[0]!;
    arrays.push(run.logits);
    const buffers = [...(out.captured ?? new Map<string, Float32Array>())].map(([name, v]) => {
      arrays.push(v);
      return [name, v.length] as const;
    });
    return { sequence: run.sequence, rows: run.rows, logits: run.logits.length, buffers };
  });
  const json = new TextEncoder().encode(JSON.stringify(header));
  const floats = arrays.reduce((n, a) => n + a.length, 0);
  const bytes = new Uint8Array(4 + json.length + 4 * floats);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, json.length, true);
  bytes.set(json, 4);
  let at = 4 + json.length;
  for (const a of arrays) {
    for (let i = 0; i < a.length; i++, at += 4) {
      view.setFloat32(at, a[i]!, true);
    }
  }
  return bytes;
}

/** The inverse of encodeStepOutputs; throws on bytes it did not write. */
export function decodeStepOutputs(bytes: Uint8Array): StepOutput[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (why: string): never => {
    throw new Error(`not an encoded capture: ${why}`);
  };
  if (bytes.length < 4) {
    fail("shorter than its header's length");
  }
  const jsonLength = view.getUint32(0, true);
  if (4 + jsonLength > bytes.length) {
    fail("the header runs past the end");
  }
  let header: { sequence: number; rows: number; logits: number; buffers: [string, number][] }[];
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + jsonLength)));
  } catch {
    return fail("its header is not JSON");
  }
  if (
    !Array.isArray(header) ||
    !header.every((step) => Array.isArray(step?.buffers) && Number.isInteger(step.rows))
  ) {
    fail("its header is not a list of steps");
  }
  let at = 4 + jsonLength;
  const next = (length: number): Float32Array => {
    if (!(Number.isInteger(length) && length >= 0) || at + 4 * length > bytes.length) {
      fail("an array runs past the end");
    }
    const a = new Float32Array(length);
    for (let i = 0; i < length; i++, at += 4) {
      a[i] = view.getFloat32(at, true);
    }
    return a;
  };
  const outputs = header.map((step) => {
    const logits = next(step.logits);
    const captured = new Map(step.buffers.map(([name, length]) => [name, next(length)] as const));
    return { runs: [{ sequence: step.sequence, rows: step.rows, logits }], captured };
  });
  if (at !== bytes.length) {
    fail(`${bytes.length - at} bytes left over`);
  }
  return outputs;
}

/**
 * Keeps the reference's capture between runs, so that a slow runner (e.g. tests under CPU
 * emulation) need not step the reference again: `load` returns the outputs a `save` kept for the
 * same model and steps, or undefined.
 */
export interface CaptureStore {
  load(): Promise<readonly StepOutput[] | undefined>;
  save(outputs: readonly StepOutput[]): Promise<void>;
}

/** The worst error of one op kind, and where it was. */
export interface OpError {
  readonly kind: OpKind;
  readonly error: number;
  /** The buffer the op writes (or the logits). */
  readonly buffer: string;
  /** Index of the step. */
  readonly step: number;
}

/**
 * Runs the captured steps on `candidate` (one new sequence, freed afterwards), each op on the
 * reference's inputs, and returns the worst relative error per op kind that occurs.
 */
export async function compareOpByOp(
  candidate: CompiledModel,
  capture: ReferenceCapture,
): Promise<ReadonlyMap<OpKind, OpError>> {
  if (candidate.stepWithInputs === undefined) {
    throw new Error(
      `backend "${candidate.backendName}" has no stepWithInputs: it cannot run ops on injected inputs.`,
    );
  }
  const graph = capture.description.graph;
  if (JSON.stringify(candidate.description.graph.ops) !== JSON.stringify(graph.ops)) {
    throw new Error("the candidate compiled a different graph from the reference's.");
  }
  const worst = new Map<OpKind, OpError>();
  const seq = candidate.createSequence();
  for (const [i, step] of capture.steps.entries()) {
    const ref = capture.outputs[i]!;
    const captured = ref.captured!;
    const ours = await candidate.stepWithInputs(
      [{ sequence: seq, tokens: step.tokens, logits: step.logits ?? "all" }],
      captured,
      { buffers: [...captured.keys()] },
    );
    for (const op of graph.ops) {
      const kind = opKind(op, capture.description);
      const isLogits = op.out === graph.logits;
      const a = isLogits ? ours.runs[0]!.logits : ours.captured?.get(op.out);
      const b = isLogits ? ref.runs[0]!.logits : captured.get(op.out)!;
      const error = a === undefined ? Number.POSITIVE_INFINITY : relativeError(a, b);
      if (!(error <= (worst.get(kind)?.error ?? -1))) {
        worst.set(kind, { kind, error, buffer: op.out, step: i });
      }
    }
  }
  candidate.freeSequence(seq);
  return worst;
}

/** The kinds whose worst error exceeds its tolerance, as readable lines (empty: all within). */
export function opViolations(
  worst: ReadonlyMap<OpKind, OpError>,
  tolerances: OpTolerances,
): string[] {
  const out: string[] = [];
  for (const e of worst.values()) {
    const tolerance = tolerances[e.kind];
    if (!(e.error <= tolerance)) {
      out.push(
        `${e.kind}: ${e.error.toExponential(2)} > ${tolerance} (at ${e.buffer}, step ${e.step})`,
      );
    }
  }
  return out;
}

/** One backend to check, e.g. one kernel path of the CPU backend. */
export interface OpByOpCandidate {
  /** Named in the test's title, e.g. "the avx2 path". */
  readonly name: string;
  /** Compiles the same model as the reference; disposed after its test. */
  readonly load: () => Promise<CompiledModel>;
  /** When set, the test is registered as skipped and its title carries this reason. */
  readonly skip?: string | undefined;
}

export interface OpByOpOptions {
  /** The reference (oracle) model; called once, disposed after the suite. */
  readonly reference: () => Promise<CompiledModel>;
  readonly candidates: readonly OpByOpCandidate[];
  /** Steps of one sequence, in order (a token array means logits "all"). */
  readonly steps: readonly (OpByOpStep | readonly number[])[];
  readonly tolerances: OpTolerances;
  /** Kinds that must occur in the graph (guards against a graph that silently lost ops). */
  readonly expectKinds?: readonly OpKind[];
  /**
   * Where the capture may be kept between runs. The reference model is still loaded (its
   * description names the graph) but not stepped when the store has the outputs.
   */
  readonly captureStore?: CaptureStore;
  /** Timeout of capturing the reference (default 120 s). */
  readonly referenceTimeout?: number;
  /** Timeout of each candidate's test (default 60 s). */
  readonly timeout?: number;
  /** Receives each candidate's worst errors (for reports, e.g. of the tolerances measured). */
  readonly onMeasured?: (candidate: string, worst: ReadonlyMap<OpKind, OpError>) => void;
}

function describeSteps(steps: readonly OpByOpStep[]): string {
  const sizes = steps.map((s) => s.tokens.length);
  return sizes.length === 1
    ? `a step of ${sizes[0]} tokens`
    : `steps of ${sizes.slice(0, -1).join(", ")} and ${sizes.at(-1)} tokens`;
}

/**
 * Registers one test per candidate: every op of every step, run by the candidate on the
 * reference's inputs, within `tolerances` of the reference's output. The reference is captured
 * once for all candidates (and not at all when every candidate is skipped).
 */
export function describeOpByOp(label: string, options: OpByOpOptions): void {
  const steps = normalizeSteps(options.steps);
  describe(`op by op against the reference: ${label}`, () => {
    let reference: CompiledModel | undefined;
    let capture: ReferenceCapture | undefined;
    const anyRuns = options.candidates.some((c) => c.skip === undefined);

    beforeAll(async () => {
      if (anyRuns) {
        reference = await options.reference();
        const kept = await options.captureStore?.load();
        if (kept !== undefined) {
          capture = { description: reference.description, steps, outputs: kept };
        } else {
          capture = await captureReference(reference, steps);
          await options.captureStore?.save(capture.outputs);
        }
      }
    }, options.referenceTimeout ?? 120_000);

    afterAll(async () => {
      await reference?.dispose();
    });

    for (const candidate of options.candidates) {
      const title = `on ${candidate.name}, ${describeSteps(steps)}${
        candidate.skip === undefined ? "" : ` (skipped: ${candidate.skip})`
      }`;
      it.skipIf(candidate.skip !== undefined)(
        title,
        { timeout: options.timeout ?? 60_000 },
        async () => {
          const model = await candidate.load();
          try {
            const worst = await compareOpByOp(model, capture!);
            options.onMeasured?.(candidate.name, worst);
            expect(opViolations(worst, options.tolerances)).toEqual([]);
            expect([...worst.keys()]).toEqual(
              expect.arrayContaining([...(options.expectKinds ?? [])]),
            );
          } finally {
            await model.dispose();
          }
        },
      );
    }
  });
}
