import { BitnetError } from "@bitnet-ts/errors";

/** node-llama-cpp (the llama.cpp reference) is not installed or cannot run here. */
export class ReferenceUnavailableError extends BitnetError {
  constructor(reason: string, options?: { cause?: unknown }) {
    super(
      "CROSSVAL_REFERENCE_UNAVAILABLE",
      `could not run llama.cpp for cross-validation - ${reason}.\nInstall the optional dependency node-llama-cpp (npm i node-llama-cpp@3.22.1); it ships prebuilt llama.cpp binaries.`,
      options,
    );
  }
}

/**
 * A forced llama.cpp CPU variant (e.g. haswell for `--kernel-path avx2`) cannot run here: this
 * CPU lacks a feature it was built for, the installed node-llama-cpp does not ship it, or ggml
 * refused to load it.
 */
export class LlamaCpuVariantUnsupportedError extends BitnetError {
  readonly variant: string;
  readonly reason: string;

  constructor(variant: string, reason: string, options?: { cause?: unknown }) {
    super(
      "CROSSVAL_LLAMA_CPU_VARIANT_UNSUPPORTED",
      `cannot run llama.cpp's "${variant}" CPU backend: ${reason}`,
      options,
    );
    this.variant = variant;
    this.reason = reason;
  }
}

/**
 * A forced llama.cpp CPU variant was requested but another one (or none, or several) loaded:
 * the comparison would not be like with like, so it does not run.
 */
export class LlamaCpuVariantMismatchError extends BitnetError {
  readonly requested: string;
  readonly loaded: string | null;

  constructor(requested: string, loaded: string | null, detail: string) {
    super(
      "CROSSVAL_LLAMA_CPU_VARIANT_MISMATCH",
      `llama.cpp was asked to run its "${requested}" CPU backend but ${loaded === null ? "no identifiable one" : `"${loaded}"`} loaded: ${detail}`,
    );
    this.requested = requested;
    this.loaded = loaded;
  }
}

/**
 * The file holds tensor types mainline llama.cpp does not read (I2_S is bitnet.cpp's format; the
 * id it writes, 36, is retired in mainline ggml), so llama.cpp cannot load it for a comparison.
 */
export class LlamaCannotLoadError extends BitnetError {
  readonly types: readonly string[];

  constructor(file: string, types: readonly string[]) {
    super(
      "CROSSVAL_LLAMA_CANNOT_LOAD",
      `llama.cpp cannot load ${file}: it holds ${types.join(", ")} tensors, which only bitnet.cpp and this engine read. Compare on a TQ2_0 or TQ1_0 copy (bitnet quantize <in.gguf> <out.gguf> tq2_0), or run without llama.cpp.`,
    );
    this.types = types;
  }
}

/** `crossvalidate` was handed llama.cpp runs (`runLlama`) of another file, prompts or length. */
export class LlamaRunsMismatchError extends BitnetError {
  constructor(reason: string) {
    super(
      "CROSSVAL_LLAMA_RUNS_MISMATCH",
      `the llama.cpp runs passed to crossvalidate do not fit this comparison: ${reason}.\nRun runLlama on the same file with the same prompts and nTokens.`,
    );
  }
}
