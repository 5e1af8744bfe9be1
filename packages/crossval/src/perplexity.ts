/**
 * llama.cpp's perplexity computed through node-llama-cpp's token-level API, with
 * llama-perplexity's semantics (the same as @bitnet-ts/generation's `perplexity`), so the two
 * engines can be compared on the same file and text.
 */
import { logProbability, type PerplexityResult } from "@bitnet-ts/generation";
import { openLlamaReference } from "./llama";

export async function llamaPerplexity(
  modelPath: string,
  tokens: readonly number[],
  options: { contextLength: number; vocabSize: number; bos?: number | undefined; threads?: number },
): Promise<PerplexityResult> {
  const ctx = options.contextLength;
  const first = Math.floor(ctx / 2);
  const chunks = Math.floor(tokens.length / ctx);
  const vocab = options.vocabSize;
  const llama = await openLlamaReference(modelPath, {
    contextSize: ctx,
    vocabSize: vocab,
    ...(options.threads === undefined ? {} : { threads: options.threads }),
  });
  let nll = 0;
  let nll2 = 0;
  let count = 0;
  const perChunk: number[] = [];
  try {
    for (let c = 0; c < chunks; c++) {
      const chunk = tokens.slice(c * ctx, (c + 1) * ctx);
      const input = [...chunk];
      if (options.bos !== undefined) {
        input[0] = options.bos;
      }
      const rows = await llama.logitsFrom(input, first);
      for (let i = first; i < ctx - 1; i++) {
        const v = -logProbability(rows, (i - first) * vocab, vocab, chunk[i + 1]!);
        nll += v;
        nll2 += v * v;
        count++;
      }
      perChunk.push(Math.exp(nll / count));
    }
  } finally {
    await llama.dispose();
  }
  const mean = nll / count;
  const ppl = Math.exp(mean);
  const variance = nll2 / count - mean * mean;
  return {
    ppl,
    error: count > 1 && variance > 0 ? ppl * Math.sqrt(variance / (count - 1)) : 0,
    chunks,
    scored: count,
    perChunk,
  };
}
