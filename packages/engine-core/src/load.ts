/** One call from a GGUF path to a compiled model on the chosen backend. */
import type { BackendOptions, CompiledModel, LoadProgress } from "./backend";
import { EngineError, EngineErrorCode } from "./errors";
import { type DescribeOptions, readModelDescription } from "./model";
import { ReferenceBackend } from "./reference/backend";
import { type BackendName, logFallback, selectBackend } from "./select";

export interface LoadModelOptions extends DescribeOptions {
  /** Backend to run on (default "auto"). */
  readonly backend?: BackendName;
  /** Context length (default: the model's). */
  readonly contextLength?: number;
  /**
   * Options per backend, by name: `{ cpu: { threads: 4, mmap: false } }`. "auto" hands each
   * backend it tries its own entry; the reference backends take none.
   */
  readonly backendOptions?: BackendOptions;
  readonly onLog?: (message: string) => void;
  /** Progress while the backend maps, repacks or uploads the weights. */
  readonly onProgress?: (progress: LoadProgress) => void;
}

/**
 * Loads a GGUF model and compiles it on a backend. With "auto", a backend that cannot compile
 * this model (e.g. an unsupported tensor type) falls back to the reference backend, with a
 * logged reason.
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
  const name = options.backend ?? "auto";
  const backend = await selectBackend(name, {
    ...(options.onLog === undefined ? {} : { onLog: options.onLog }),
    ...(options.backendOptions === undefined ? {} : { backendOptions: options.backendOptions }),
  });
  const archOptions =
    options.ffnActivation === undefined ? {} : { ffnActivation: options.ffnActivation };
  const compileOptions = {
    ...(options.contextLength === undefined ? {} : { contextLength: options.contextLength }),
    ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
  };
  const description = await readModelDescription(path, {
    ...archOptions,
    tensorData: backend.needsTensorData,
  });
  try {
    return await backend.compile(description, compileOptions);
  } catch (error) {
    if (
      name !== "auto" ||
      backend instanceof ReferenceBackend ||
      !(error instanceof EngineError) ||
      error.code !== EngineErrorCode.BACKEND_UNAVAILABLE
    ) {
      throw error;
    }
    logFallback(
      options.onLog,
      `backend "${backend.name}" cannot run this model (${error.message}); using "reference"`,
    );
    const reference = new ReferenceBackend();
    return reference.compile(
      await readModelDescription(path, { ...archOptions, tensorData: true }),
      compileOptions,
    );
  }
}
