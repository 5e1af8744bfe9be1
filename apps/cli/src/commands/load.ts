import { TextGenerator } from "@bitnet-ts/generation";
import { defaultModelPath } from "../default-model";
import { backendOptionsOf, type ModelOptions } from "../options";
import type { CliIo } from "../program";
import { loadProgress } from "../progress";

/** Resolves -m (or the demo model) and loads the generator, reporting load time on stderr. */
export async function loadGenerator(
  options: ModelOptions,
  io: CliIo,
  modelOptional: boolean,
): Promise<{ generator: TextGenerator; path: string; loadMs: number }> {
  let path = options.model;
  if (path === undefined) {
    if (!modelOptional) {
      throw new Error("could not start - no model given; pass -m model.gguf.");
    }
    path = await defaultModelPath((line) => io.stderr(`${line}\n`));
  }
  const started = performance.now();
  const progress = loadProgress();
  const generator = await TextGenerator.load(path, {
    ...(options.backend === undefined ? {} : { backend: options.backend }),
    ...(options.ctxSize === undefined ? {} : { contextLength: options.ctxSize }),
    ...(options.ffnAct === undefined ? {} : { ffnActivation: options.ffnAct }),
    backendOptions: backendOptionsOf(options),
    onLog: (line) => io.stderr(`bitnet: ${line}\n`),
    onProgress: progress.onProgress,
  }).finally(progress.stop);
  return { generator, path, loadMs: performance.now() - started };
}
