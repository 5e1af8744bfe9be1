/**
 * The checks every backend makes on a step before touching any state, so that a bad step never
 * half-runs and every backend rejects it with the same error.
 */
import type { CaptureRequest, SequenceRun } from "./backend";
import { EngineError, EngineErrorCode } from "./errors";
import type { Graph } from "./graph";
import { checkReduction, type FlatStep, flattenRuns } from "./steps";

/**
 * Throws BAD_SEQUENCE (a sequence twice in one step; unknown sequences come from `lengthOf`),
 * BAD_TOKEN (outside 0..vocab−1 or not an integer), CONTEXT_FULL, or BAD_OPTION (a logits
 * reduction that is not "full", "argmax" or a top-k in 1..vocab). Returns the step's tokens.
 */
export function validateStep(
  runs: readonly SequenceRun[],
  lengthOf: (sequence: number) => number,
  vocabSize: number,
  contextLength: number,
): number {
  const seen = new Set<number>();
  let total = 0;
  for (const run of runs) {
    const length = lengthOf(run.sequence);
    if (seen.has(run.sequence)) {
      throw new EngineError(
        EngineErrorCode.BAD_SEQUENCE,
        `could not run the step - sequence ${run.sequence} appears twice in one step.`,
      );
    }
    seen.add(run.sequence);
    checkReduction(run.reduce, vocabSize);
    for (const token of run.tokens) {
      if (!Number.isInteger(token) || token < 0 || token >= vocabSize) {
        throw new EngineError(
          EngineErrorCode.BAD_TOKEN,
          `could not run the step - token ${token} is outside the vocabulary (0..${vocabSize - 1}).`,
        );
      }
    }
    if (length + run.tokens.length > contextLength) {
      throw new EngineError(
        EngineErrorCode.CONTEXT_FULL,
        `could not run the step - sequence ${run.sequence} would hold ${length + run.tokens.length} tokens, more than the context length ${contextLength}.`,
      );
    }
    total += run.tokens.length;
  }
  return total;
}

/**
 * Checks a step's capture and injection requests (op-by-op mode) before any state changes: every
 * name is a buffer of the graph, every injected array holds `total` × width values, and a step
 * that captures or injects fits one call of a backend that splits long steps into calls of
 * `maxTokensPerCall` tokens (capture and injection address one call's buffers).
 */
export function checkStepBuffers(
  graph: Graph,
  total: number,
  capture: CaptureRequest | undefined,
  inputs: ReadonlyMap<string, Float32Array> | undefined,
  maxTokensPerCall: number = Number.POSITIVE_INFINITY,
): void {
  const captured = capture?.buffers ?? [];
  for (const name of captured) {
    if (graph.buffers[name] === undefined) {
      throw new EngineError(
        EngineErrorCode.BAD_OPTION,
        `could not capture buffer "${name}" - the graph has no such buffer.`,
      );
    }
  }
  for (const [name, values] of inputs ?? []) {
    const width = graph.buffers[name];
    if (width === undefined) {
      throw new EngineError(
        EngineErrorCode.BAD_OPTION,
        `could not inject buffer "${name}" - the graph has no such buffer.`,
      );
    }
    if (values.length !== total * width) {
      throw new EngineError(
        EngineErrorCode.BAD_OPTION,
        `could not inject buffer "${name}" - it needs ${total * width} values (${total} tokens × ${width}), got ${values.length}.`,
      );
    }
  }
  if ((captured.length > 0 || (inputs?.size ?? 0) > 0) && total > maxTokensPerCall) {
    throw new EngineError(
      EngineErrorCode.BAD_OPTION,
      `could not capture or inject buffers - the step has ${total} tokens, more than one call of this backend runs (${maxTokensPerCall}).`,
    );
  }
}

/** A native backend's step, validated and flattened, with its capture and inject buffers by id. */
export interface NativeStepPlan {
  readonly flat: FlatStep;
  /** Buffer ids to capture, and the arrays (total × width) the values go to, in request order. */
  readonly captureIds: Int32Array;
  readonly captureOut: Float32Array[];
  /** The same arrays by buffer name (the StepOutput's `captured`). */
  readonly captured: Map<string, Float32Array>;
  readonly injectIds: Int32Array;
  readonly injectData: Float32Array[];
}

/**
 * Everything a backend that runs steps in native code (the CPU's, CUDA's) checks and prepares
 * before its first call: validateStep, checkStepBuffers, the flattened tokens, and the capture
 * and inject buffers resolved through `bufferIds` (the graph's buffer names → native ids).
 */
export function planNativeStep(options: {
  readonly graph: Graph;
  readonly runs: readonly SequenceRun[];
  readonly capture: CaptureRequest | undefined;
  readonly inputs: ReadonlyMap<string, Float32Array> | undefined;
  readonly bufferIds: ReadonlyMap<string, number>;
  readonly lengthOf: (sequence: number) => number;
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly maxTokensPerCall: number;
}): NativeStepPlan {
  const { graph, runs, capture, inputs, bufferIds, lengthOf } = options;
  const total = validateStep(runs, lengthOf, options.vocabSize, options.contextLength);
  checkStepBuffers(graph, total, capture, inputs, options.maxTokensPerCall);
  const names = capture?.buffers ?? [];
  const captured = new Map<string, Float32Array>();
  const captureOut = names.map((name) => {
    const out = new Float32Array(total * graph.buffers[name]!);
    captured.set(name, out);
    return out;
  });
  return {
    flat: flattenRuns(runs, total, lengthOf),
    captureIds: Int32Array.from(names, (name) => bufferIds.get(name)!),
    captureOut,
    captured,
    injectIds: Int32Array.from(inputs?.keys() ?? [], (name) => bufferIds.get(name)!),
    injectData: [...(inputs?.values() ?? [])],
  };
}

/** One native call of a step split into calls of at most `maxTokensPerCall` tokens. */
export interface StepChunk {
  readonly start: number;
  readonly end: number;
  /** wantLogits of the chunk's tokens. */
  readonly want: Uint8Array;
  /** The chunk's first logits row in the step, and how many rows it returns. */
  readonly row: number;
  readonly rows: number;
}

/** The calls a flattened step is split into, in order. */
export function stepChunks(flat: FlatStep, maxTokensPerCall: number): StepChunk[] {
  const chunks: StepChunk[] = [];
  let row = 0;
  for (let start = 0; start < flat.total; start += maxTokensPerCall) {
    const end = Math.min(flat.total, start + maxTokensPerCall);
    const want = flat.wantLogits.subarray(start, end);
    let rows = 0;
    for (const w of want) {
      rows += w;
    }
    chunks.push({ start, end, want, row, rows });
    row += rows;
  }
  return chunks;
}
