/**
 * The checks every backend makes on a step before touching any state, so that a bad step never
 * half-runs and every backend rejects it with the same error.
 */
import type { SequenceRun } from "./backend";
import { EngineError, EngineErrorCode } from "./errors";

/**
 * Throws BAD_SEQUENCE (a sequence twice in one step; unknown sequences come from `lengthOf`),
 * BAD_TOKEN (outside 0..vocab−1 or not an integer) or CONTEXT_FULL. Returns the step's tokens.
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
