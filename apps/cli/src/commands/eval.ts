/**
 * `bitnet eval`: teacher-forced evaluation of a token sequence. Writes the logits of every
 * position as raw little-endian f32 [n_tokens, n_vocab] and prints each position's greedy next
 * token as a JSON array.
 */
import { evaluateLogits } from "@bitnet-ts/generation";
import { argmax } from "@bitnet-ts/logits";
import { CliInputError } from "../errors";
import type { ModelOptions } from "../options";
import { checkOutputPath, writeFileAtomic } from "../output-file";
import type { CliIo } from "../program";
import { loadGenerator } from "./load";
import { parseIds } from "./tokenize";

export interface EvalOptions extends ModelOptions {
  tokens?: string;
  seq?: boolean;
  logits?: string;
}

export async function runEval(options: EvalOptions, io: CliIo): Promise<void> {
  if (options.tokens === undefined) {
    throw new CliInputError("could not evaluate - give the tokens with --tokens 1,2,3.");
  }
  const tokens = parseIds(options.tokens, "evaluate", "--tokens");
  if (options.logits !== undefined) {
    checkOutputPath(options.logits, "--logits");
  }
  const { generator } = await loadGenerator(options, io, false);
  try {
    const vocab = generator.model.description.hparams.vocabSize;
    const bad = tokens.find((t) => t >= vocab);
    if (bad !== undefined) {
      throw new CliInputError(
        `could not evaluate - token ${bad} is out of range (vocabulary of ${vocab}).`,
      );
    }
    if (tokens.length > generator.model.contextLength) {
      throw new CliInputError(
        `could not evaluate - ${tokens.length} tokens exceed the context length ${generator.model.contextLength}.`,
      );
    }
    const logits = await evaluateLogits(generator.model, tokens, {
      mode: options.seq ? "sequential" : "batch",
    });
    if (options.logits !== undefined) {
      writeFileAtomic(
        options.logits,
        new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength),
        "--logits",
      );
    }
    const greedy = tokens.map((_, i) => argmax(logits.subarray(i * vocab, (i + 1) * vocab)));
    io.stdout(`${JSON.stringify(greedy)}\n`);
  } finally {
    await generator.dispose();
  }
}
