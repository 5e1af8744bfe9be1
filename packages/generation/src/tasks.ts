/**
 * Teacher-forced evaluation and perplexity on a compiled model.
 */
import type { CompiledModel } from "@bitnet-ts/engine-core";
import { GenerationError, GenerationErrorCode } from "./errors";

export interface EvaluateOptions {
  /** "batch" (default): all tokens in one step per chunk; "sequential": one token per step. */
  readonly mode?: "batch" | "sequential";
  /** Tokens per step in batch mode (default 512). */
  readonly batchSize?: number;
}

/** Logits of every position of `tokens` (row-major [n × vocab]). */
export async function evaluateLogits(
  model: CompiledModel,
  tokens: readonly number[],
  options: EvaluateOptions = {},
): Promise<Float32Array> {
  const vocab = model.description.hparams.vocabSize;
  const out = new Float32Array(tokens.length * vocab);
  const seq = model.createSequence();
  try {
    const step = options.mode === "sequential" ? 1 : (options.batchSize ?? 512);
    for (let start = 0; start < tokens.length; start += step) {
      const chunk = tokens.slice(start, start + step);
      const { runs } = await model.step([{ sequence: seq, tokens: chunk, logits: "all" }]);
      out.set(runs[0]!.logits, start * vocab);
    }
  } finally {
    model.freeSequence(seq);
  }
  return out;
}

/** Log-softmax probability of `target` in a logits row, in double (llama-perplexity's log_softmax). */
export function logProbability(
  logits: Float32Array,
  offset: number,
  vocab: number,
  target: number,
): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < vocab; i++) {
    max = Math.max(max, logits[offset + i]!);
  }
  let sum = 0;
  for (let i = 0; i < vocab; i++) {
    sum += Math.exp(logits[offset + i]! - max);
  }
  return logits[offset + target]! - max - Math.log(sum);
}

export interface PerplexityOptions {
  /** Tokens per chunk (llama-perplexity's -c; default 512). */
  readonly contextLength?: number;
  /** Replace each chunk's first token by this BOS id (llama.cpp does when the model adds BOS). */
  readonly bos?: number | undefined;
  /** Most chunks to score (default all). */
  readonly maxChunks?: number;
  readonly batchSize?: number;
  /** Called after every chunk with the running estimate. */
  readonly onChunk?: (chunk: number, chunks: number, ppl: number) => void;
}

export interface PerplexityResult {
  readonly ppl: number;
  /** Uncertainty as llama-perplexity prints it (PPL ± this). */
  readonly error: number;
  readonly chunks: number;
  readonly scored: number;
  /** Running estimate after each chunk. */
  readonly perChunk: readonly number[];
}

/**
 * Perplexity with llama-perplexity's semantics: the tokens are cut into chunks of n_ctx; each
 * chunk is evaluated from an empty cache (its first token replaced by BOS when given) and only
 * the second half is scored: logits at position i predict token i+1 for i = n_ctx/2 … n_ctx−2.
 */
export async function perplexity(
  model: CompiledModel,
  tokens: readonly number[],
  options: PerplexityOptions = {},
): Promise<PerplexityResult> {
  const ctx = options.contextLength ?? 512;
  if (!Number.isInteger(ctx) || ctx < 4) {
    throw new GenerationError(
      GenerationErrorCode.BAD_OPTION,
      `could not compute perplexity - context ${ctx} must be an integer ≥ 4.`,
    );
  }
  if (ctx > model.contextLength) {
    throw new GenerationError(
      GenerationErrorCode.BAD_OPTION,
      `could not compute perplexity - context ${ctx} exceeds the model's ${model.contextLength}.`,
    );
  }
  if (tokens.length < 2 * ctx) {
    throw new GenerationError(
      GenerationErrorCode.BAD_OPTION,
      `could not compute perplexity - the text has ${tokens.length} tokens; at least 2 × n_ctx = ${2 * ctx} are needed (use a longer text or a smaller -c).`,
    );
  }
  const vocab = model.description.hparams.vocabSize;
  const chunks = Math.min(
    Math.floor(tokens.length / ctx),
    options.maxChunks ?? Number.POSITIVE_INFINITY,
  );
  const first = Math.floor(ctx / 2);
  const batch = options.batchSize ?? 512;
  let nll = 0;
  let nll2 = 0;
  let count = 0;
  const perChunk: number[] = [];
  for (let c = 0; c < chunks; c++) {
    const chunk = tokens.slice(c * ctx, (c + 1) * ctx);
    const input = [...chunk];
    if (options.bos !== undefined) {
      input[0] = options.bos;
    }
    const seq = model.createSequence();
    try {
      const rows = new Float32Array((ctx - first) * vocab);
      for (let start = 0; start < ctx; start += batch) {
        const end = Math.min(ctx, start + batch);
        // Positions before `first` need no logits; split the run where scoring starts.
        if (start < first && end > first) {
          await model.step([{ sequence: seq, tokens: input.slice(start, first), logits: "none" }]);
          const { runs } = await model.step([
            { sequence: seq, tokens: input.slice(first, end), logits: "all" },
          ]);
          rows.set(runs[0]!.logits, 0);
        } else if (end <= first) {
          await model.step([{ sequence: seq, tokens: input.slice(start, end), logits: "none" }]);
        } else {
          const { runs } = await model.step([
            { sequence: seq, tokens: input.slice(start, end), logits: "all" },
          ]);
          rows.set(runs[0]!.logits, (start - first) * vocab);
        }
      }
      for (let i = first; i < ctx - 1; i++) {
        const v = -logProbability(rows, (i - first) * vocab, vocab, chunk[i + 1]!);
        nll += v;
        nll2 += v * v;
        count++;
      }
    } finally {
      model.freeSequence(seq);
    }
    const ppl = Math.exp(nll / count);
    perChunk.push(ppl);
    options.onChunk?.(c + 1, chunks, ppl);
  }
  const mean = nll / count;
  const ppl = Math.exp(mean);
  const variance = nll2 / count - mean * mean;
  const error = count > 1 && variance > 0 ? ppl * Math.sqrt(variance / (count - 1)) : 0;
  return { ppl, error, chunks, scored: count, perChunk };
}
