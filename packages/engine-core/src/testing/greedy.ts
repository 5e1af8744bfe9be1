import type { CompiledModel } from "../backend";

/**
 * `n` greedy tokens after `prompt` in a new sequence (freed afterwards), each step asking the
 * backend for the argmax only: what the golden-token tests of every backend compare.
 */
export async function greedyTokens(
  model: CompiledModel,
  prompt: readonly number[],
  n: number,
): Promise<number[]> {
  const seq = model.createSequence();
  try {
    let { runs } = await model.step([{ sequence: seq, tokens: prompt, reduce: "argmax" }]);
    const tokens: number[] = [];
    while (tokens.length < n) {
      tokens.push(runs[0]!.argmax![0]!);
      if (tokens.length < n) {
        ({ runs } = await model.step([
          { sequence: seq, tokens: [tokens.at(-1)!], reduce: "argmax" },
        ]));
      }
    }
    return tokens;
  } finally {
    model.freeSequence(seq);
  }
}
