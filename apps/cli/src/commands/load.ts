import * as os from "node:os";
import { type Drafter, loadDrafter as loadDrafterFor, TextGenerator } from "@bitnet-ts/generation";
import { defaultModelPath } from "../default-model";
import { CliInputError } from "../errors";
import { backendField, backendOptionsOf, type ModelOptions } from "../options";
import type { CliIo } from "../program";
import { loadProgress } from "../progress";

/** Resolves -m (or the demo model) and loads the generator, reporting load time on stderr. */
export async function loadGenerator(
  options: ModelOptions,
  io: CliIo,
  modelOptional: boolean,
): Promise<{ generator: TextGenerator; path: string; loadMs: number }> {
  let file = options.model;
  if (file === undefined) {
    if (!modelOptional) {
      throw new CliInputError("could not start - no model given; pass -m model.gguf.");
    }
    file = await defaultModelPath((line) => io.stderr(`${line}\n`));
  }
  const cpus = os.availableParallelism();
  if (options.threads !== undefined && options.threads > cpus) {
    io.stderr(
      `bitnet: warning: -t ${options.threads} is more threads than the ${cpus} CPUs this process may use; threads beyond ${cpus} wait on each other (slower, not faster).\n`,
    );
  }
  const started = performance.now();
  const progress = loadProgress();
  const generator = await TextGenerator.load(file, {
    ...backendField(options),
    ...(options.ctxSize === undefined ? {} : { contextLength: options.ctxSize }),
    ...(options.ffnAct === undefined ? {} : { ffnActivation: options.ffnAct }),
    backendOptions: backendOptionsOf(options),
    onLog: (line) => io.stderr(`bitnet: ${line}\n`),
    onProgress: progress.onProgress,
  }).finally(progress.stop);
  const tensors = [...generator.model.description.tensors.values()];
  if (options.tq1 !== undefined && !tensors.some((t) => t.info.type.name === "TQ1_0")) {
    io.stderr(
      `bitnet: warning: --tq1 ${options.tq1} changes nothing: the model has no TQ1_0 weights.\n`,
    );
  }
  const trained = generator.model.description.hparams.contextLength;
  if (options.ctxSize !== undefined && options.ctxSize > trained) {
    io.stderr(
      `bitnet: warning: -c ${options.ctxSize} is longer than the ${trained} tokens the model was trained on; text past ${trained} tokens is out of its training range.\n`,
    );
  }
  return { generator, path: file, loadMs: performance.now() - started };
}

/** `--draft` and `--draft-max` (speculative decoding). */
export interface DraftOptions {
  draft?: string;
  draftMax?: number;
}

/**
 * The drafter `--draft` asks for ("lookup" or a draft model's GGUF, loaded with the target's
 * backend settings; see loadDrafter in @bitnet-ts/generation). The caller calls `dispose`.
 */
export async function loadDrafter(
  options: ModelOptions & DraftOptions,
  target: TextGenerator,
  io: CliIo,
): Promise<{ drafter: Drafter | undefined; dispose: () => Promise<void> }> {
  if (options.draft === undefined) {
    if (options.draftMax !== undefined) {
      throw new CliInputError("could not use --draft-max - no --draft given (lookup or a GGUF).");
    }
    return { drafter: undefined, dispose: async () => {} };
  }
  const loaded = await loadDrafterFor(options.draft, target, {
    ...(options.draftMax === undefined ? {} : { maxDraft: options.draftMax }),
    backendOptions: backendOptionsOf(options),
    onLog: (line) => io.stderr(`bitnet: draft: ${line}\n`),
  });
  io.stderr(
    `bitnet: drafting with ${loaded.drafter.name} (up to ${loaded.drafter.maxDraft} tokens per step)\n`,
  );
  return { drafter: loaded.drafter, dispose: () => loaded.dispose() };
}
