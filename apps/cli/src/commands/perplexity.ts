/** `bitnet perplexity`: llama-perplexity on a text file (scores the second half of each chunk). */
import { perplexity } from "@bitnet-ts/generation";
import { CliInputError } from "../errors";
import type { ModelOptions } from "../options";
import type { CliIo } from "../program";
import { loadGenerator } from "./load";
import { readTextFile } from "./tokenize";

export interface PerplexityCliOptions extends ModelOptions {
  file?: string;
  chunks?: number;
  batchSize?: number;
  json?: boolean;
}

export async function runPerplexity(options: PerplexityCliOptions, io: CliIo): Promise<void> {
  if (options.file === undefined) {
    throw new CliInputError("could not compute perplexity - give the text with -f FILE.");
  }
  const { ctxSize, ...rest } = options;
  const ctx = ctxSize ?? 512;
  if (ctx < 4) {
    // Each chunk scores its second half from the first: a few tokens of each at least.
    throw new CliInputError(`could not compute perplexity - -c ${ctx} must be at least 4.`);
  }
  const text = readTextFile(options.file);
  const { generator } = await loadGenerator({ ...rest, ctxSize: ctx }, io, false);
  try {
    const tokenizer = generator.tokenizer;
    const tokens = tokenizer.encode(text);
    const chunks = Math.min(Math.floor(tokens.length / ctx), options.chunks ?? Infinity);
    if (tokens.length >= 2 * ctx) {
      io.stderr(`bitnet perplexity: ${tokens.length} tokens, ${chunks} chunks of ${ctx}\n`);
    }
    const started = performance.now();
    const result = await perplexity(generator.model, tokens, {
      contextLength: ctx,
      bos: tokenizer.vocab.addBos ? tokenizer.bos : undefined,
      ...(options.chunks === undefined ? {} : { maxChunks: options.chunks }),
      ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }),
      onChunk: (c, _n, ppl) => {
        if (!options.json) {
          io.stdout(`[${c}]${ppl.toFixed(4)},`);
        }
      },
    });
    const seconds = (performance.now() - started) / 1000;
    if (options.json) {
      io.stdout(
        `${JSON.stringify({ ppl: result.ppl, error: result.error, chunks: result.chunks, scored_tokens: result.scored, n_ctx: ctx, per_chunk: result.perChunk, seconds })}\n`,
      );
    } else {
      io.stdout(
        `\nFinal estimate: PPL = ${result.ppl.toFixed(4)} +/- ${result.error.toFixed(5)}\n`,
      );
      io.stderr(`bitnet perplexity: ${result.scored} tokens scored in ${seconds.toFixed(1)} s\n`);
    }
  } finally {
    await generator.dispose();
  }
}
