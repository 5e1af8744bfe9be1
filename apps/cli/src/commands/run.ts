/** `bitnet run`: generate text from a prompt, streamed to stdout (llama-cli style). */
import type { GenerationResult } from "@bitnet-ts/generation";
import { CliInputError } from "../errors";
import { cpuFlagsOf, type ModelOptions, type SamplingOptions, samplingSettings } from "../options";
import { checkOutputPath } from "../output-file";
import type { CliIo } from "../program";
import {
  backendSection,
  modelSection,
  receiptHeader,
  samplingSection,
  writeReceipt,
} from "../receipt";
import { type DraftOptions, loadDrafter, loadGenerator } from "./load";
import { readTextFile } from "./tokenize";

export interface RunOptions extends ModelOptions, SamplingOptions, DraftOptions {
  prompt?: string;
  file?: string;
  nPredict?: number;
  json?: boolean;
  displayPrompt?: boolean;
  reversePrompt?: string[];
  ignoreEos?: boolean;
  special?: boolean;
  receipt?: string;
}

export async function runRun(
  options: RunOptions,
  io: CliIo,
): Promise<GenerationResult & { model: string; loadMs: number; backend: string }> {
  if (options.prompt !== undefined && options.file !== undefined) {
    throw new CliInputError("could not run - give either -p TEXT or -f FILE, not both.");
  }
  const prompt = options.file !== undefined ? readTextFile(options.file) : (options.prompt ?? "");
  if (options.receipt !== undefined) {
    checkOutputPath(options.receipt, "--receipt");
  }
  if (options.prompt === undefined && options.file === undefined && !process.stdin.isTTY) {
    io.stderr(
      "bitnet: no prompt given, so generating from the start of text; standard input is not read unless asked (-f -).\n",
    );
  }
  const { generator, path, loadMs } = await loadGenerator(options, io, true);
  const draft = await loadDrafter(options, generator, io).catch(async (error: unknown) => {
    await generator.dispose();
    throw error;
  });
  try {
    const controller = new AbortController();
    const onSigint = (): void => controller.abort();
    process.once("SIGINT", onSigint);
    const settings = samplingSettings(options);
    const maxTokens = options.nPredict ?? 128;
    const stop = options.reversePrompt ?? [];
    const generation = generator.generate(prompt, {
      ...settings,
      maxTokens,
      stop,
      ignoreEos: options.ignoreEos === true,
      parseSpecial: options.special === true,
      signal: controller.signal,
      ...(draft.drafter === undefined ? {} : { draft: draft.drafter }),
    });
    if (!options.json) {
      if (options.displayPrompt !== false) {
        io.stdout(prompt);
      }
      for await (const piece of generation) {
        io.stdout(piece);
      }
      io.stdout("\n");
    }
    const result = await generation.result;
    process.removeListener("SIGINT", onSigint);
    const t = result.timings;
    if (options.json) {
      io.stdout(
        `${JSON.stringify({
          prompt_tokens: result.promptTokens,
          tokens: result.tokens,
          text: result.text,
          finish_reason: result.finishReason,
          seed: result.seed,
          ...(result.speculative === undefined ? {} : { speculative: result.speculative }),
          timings: {
            load_ms: round(loadMs),
            prompt_ms: round(t.promptMs),
            prompt_tokens: t.promptTokens,
            prompt_per_second: round(t.promptTokensPerSecond),
            predicted_tokens: t.generatedTokens,
            // The first token comes with the prompt: predicted_ms times the ones after it.
            predicted_ms: round(t.generationMs),
            predicted_timed_tokens: Math.max(t.generatedTokens - 1, 0),
            predicted_per_second: round(t.generatedTokensPerSecond),
          },
        })}\n`,
      );
    } else {
      const s = result.speculative;
      if (s !== undefined) {
        io.stderr(
          `bitnet: drafting (${s.drafter}): ${s.accepted} of ${s.drafted} drafted tokens accepted (${s.drafted > 0 ? ((100 * s.accepted) / s.drafted).toFixed(0) : 0}%) in ${s.steps} steps\n`,
        );
      }
      io.stderr(
        `bitnet: ${generator.model.backendName} backend | load ${round(loadMs)} ms | prompt ${t.promptTokens} tokens in ${round(t.promptMs)} ms (${round(t.promptTokensPerSecond)} t/s) | generated ${t.generatedTokens} tokens, ${Math.max(t.generatedTokens - 1, 0)} after the first in ${round(t.generationMs)} ms (${round(t.generatedTokensPerSecond)} t/s) | ${result.finishReason} | seed ${result.seed}\n`,
      );
    }
    if (options.receipt !== undefined) {
      const model = generator.model;
      writeReceipt(options.receipt, {
        ...receiptHeader(),
        kind: "run",
        model: await modelSection(model, path, (line) => io.stderr(`bitnet: ${line}\n`)),
        backend: backendSection(
          model,
          {
            ...cpuFlagsOf(options),
            ...(options.ffnAct === undefined ? {} : { ffnActivation: options.ffnAct }),
          },
          options.threads,
        ),
        context_length: model.contextLength,
        sampling: samplingSection(settings, result.seed, {
          maxTokens,
          ignoreEos: options.ignoreEos === true,
          stop,
        }),
        prompt_tokens: [...result.promptTokens],
        generated_tokens: [...result.tokens],
        finish_reason: result.finishReason,
        timings: {
          load_ms: loadMs,
          prefill_ms: t.promptMs,
          decode_ms: t.generationMs,
          prefill_tokens_per_second: t.promptTokensPerSecond,
          decode_tokens_per_second: t.generatedTokensPerSecond,
        },
        bench: null,
      });
      io.stderr(`bitnet: receipt written to ${options.receipt}\n`);
    }
    return { ...result, model: path, loadMs, backend: generator.model.backendName };
  } finally {
    await draft.dispose();
    await generator.dispose();
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
