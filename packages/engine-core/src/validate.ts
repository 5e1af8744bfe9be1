/**
 * The checks every backend makes on a step before touching any state, so that a bad step never
 * half-runs and every backend rejects it with the same error.
 */
import type { CaptureRequest, SequenceRun } from "./backend";
import { EngineError, EngineErrorCode } from "./errors";
import type { Graph } from "./graph";
import { checkReduction } from "./steps";

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
