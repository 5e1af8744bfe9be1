import { BitnetError } from "@bitnet-ts/errors";

export const EngineErrorCode = {
  /** `general.architecture` names an architecture we do not implement. */
  UNSUPPORTED_ARCH: "ENGINE_UNSUPPORTED_ARCH",
  /** A hyperparameter key is missing or has an impossible value. */
  BAD_HPARAMS: "ENGINE_BAD_HPARAMS",
  /** A required tensor is missing. */
  MISSING_TENSOR: "ENGINE_MISSING_TENSOR",
  /** A tensor has the wrong shape. */
  BAD_TENSOR_SHAPE: "ENGINE_BAD_TENSOR_SHAPE",
  /** A tensor has a type this engine cannot use in that place. */
  BAD_TENSOR_TYPE: "ENGINE_BAD_TENSOR_TYPE",
  /** `BoundTensor.data` was used on a model whose file is not in memory (use `read()`). */
  NO_TENSOR_DATA: "ENGINE_NO_TENSOR_DATA",
  /** A sequence id is unknown or already freed. */
  BAD_SEQUENCE: "ENGINE_BAD_SEQUENCE",
  /** A sequence would grow past the context length. */
  CONTEXT_FULL: "ENGINE_CONTEXT_FULL",
  /** A token id is outside the vocabulary. */
  BAD_TOKEN: "ENGINE_BAD_TOKEN",
  /** A backend name is unknown or the backend cannot run here. */
  BACKEND_UNAVAILABLE: "ENGINE_BACKEND_UNAVAILABLE",
  /** An option has an invalid value. */
  BAD_OPTION: "ENGINE_BAD_OPTION",
  /** The model or a sequence was used after being disposed. */
  DISPOSED: "ENGINE_DISPOSED",
  /** Device memory (weights, scratch, KV pages) is exhausted; the step or load did not happen. */
  OUT_OF_MEMORY: "ENGINE_OUT_OF_MEMORY",
  /** The GPU device was lost (driver reset, removed, destroyed); the model must be loaded again. */
  DEVICE_LOST: "ENGINE_DEVICE_LOST",
} as const;

export type EngineErrorCode = (typeof EngineErrorCode)[keyof typeof EngineErrorCode];

export class EngineError extends BitnetError {
  declare readonly code: EngineErrorCode;

  constructor(code: EngineErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
