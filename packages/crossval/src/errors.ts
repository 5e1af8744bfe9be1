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
