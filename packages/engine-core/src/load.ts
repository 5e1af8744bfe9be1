/** One call from a GGUF path to a compiled model on the chosen backend. */
import type { CompiledModel } from "./backend";
import { type DescribeOptions, readModelDescription } from "./model";
import { type BackendName, selectBackend } from "./select";

export interface LoadModelOptions extends DescribeOptions {
  /** Backend to run on (default "auto"). */
  readonly backend?: BackendName;
  /** Context length (default: the model's). */
  readonly contextLength?: number;
  readonly threads?: number;
  readonly onLog?: (message: string) => void;
}

/**
 * Loads a GGUF model and compiles it on a backend.
 *
 * @example
 * const model = await loadModel("model.gguf", { backend: "reference" });
 * const seq = model.createSequence();
 * const { runs } = await model.step([{ sequence: seq, tokens: [128000, 9906] }]);
 * console.log(runs[0].logits.length); // vocab size
 */
export async function loadModel(
  path: string,
  options: LoadModelOptions = {},
): Promise<CompiledModel> {
  const description = await readModelDescription(
    path,
    options.ffnActivation === undefined ? {} : { ffnActivation: options.ffnActivation },
  );
  const backend = await selectBackend(options.backend ?? "auto", {
    ...(options.threads === undefined ? {} : { threads: options.threads }),
    ...(options.onLog === undefined ? {} : { onLog: options.onLog }),
  });
  return backend.compile(description, {
    ...(options.contextLength === undefined ? {} : { contextLength: options.contextLength }),
    ...(options.threads === undefined ? {} : { threads: options.threads }),
  });
}
