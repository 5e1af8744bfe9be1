import { BitnetError } from "@bitnet-ts/errors";

/**
 * Stable codes of every way a GGUF file can be rejected. Tests and callers branch on these;
 * never change the meaning of an existing code.
 */
export const GgufErrorCode = {
  /** The first four bytes are not `GGUF`. */
  BAD_MAGIC: "GGUF_BAD_MAGIC",
  /** The version is not 2 or 3 (v1 is obsolete). */
  UNSUPPORTED_VERSION: "GGUF_UNSUPPORTED_VERSION",
  /** The version field reads byte-swapped: a big-endian GGUF, which we do not support. */
  BIG_ENDIAN: "GGUF_BIG_ENDIAN",
  /** The file ends before a field it announces. */
  TRUNCATED: "GGUF_TRUNCATED",
  /** A count, length, nesting depth or size exceeds a named safety limit or the file size. */
  LIMIT_EXCEEDED: "GGUF_LIMIT_EXCEEDED",
  /** A string is not valid UTF-8. */
  INVALID_UTF8: "GGUF_INVALID_UTF8",
  /** A metadata value type id is unknown. */
  INVALID_VALUE_TYPE: "GGUF_INVALID_VALUE_TYPE",
  /** A BOOL value is neither 0 nor 1. */
  INVALID_BOOL: "GGUF_INVALID_BOOL",
  /** A metadata key is empty. */
  EMPTY_KEY: "GGUF_EMPTY_KEY",
  /** A metadata key appears twice. */
  DUPLICATE_KEY: "GGUF_DUPLICATE_KEY",
  /** `general.alignment` has the wrong type or is not a power of two. */
  BAD_ALIGNMENT: "GGUF_BAD_ALIGNMENT",
  /** A tensor name is empty or too long. */
  BAD_TENSOR_NAME: "GGUF_BAD_TENSOR_NAME",
  /** Two tensors have the same name. */
  DUPLICATE_TENSOR: "GGUF_DUPLICATE_TENSOR",
  /** A tensor has more than 4 dimensions. */
  TOO_MANY_DIMS: "GGUF_TOO_MANY_DIMS",
  /** A tensor's element count or byte size overflows 64 bits. */
  SHAPE_OVERFLOW: "GGUF_SHAPE_OVERFLOW",
  /** A tensor's ggml type id is unknown. */
  UNKNOWN_TENSOR_TYPE: "GGUF_UNKNOWN_TENSOR_TYPE",
  /** A tensor's row length (ne0) is not a multiple of its type's block size. */
  BAD_ROW_LENGTH: "GGUF_BAD_ROW_LENGTH",
  /** A tensor's offset is not a multiple of the alignment. */
  TENSOR_MISALIGNED: "GGUF_TENSOR_MISALIGNED",
  /** A tensor's data extends past the end of the file. */
  TENSOR_OUT_OF_BOUNDS: "GGUF_TENSOR_OUT_OF_BOUNDS",
  /** Two tensors' data ranges overlap. */
  TENSOR_OVERLAP: "GGUF_TENSOR_OVERLAP",
  /** A metadata key a caller requires is absent. */
  MISSING_KEY: "GGUF_MISSING_KEY",
  /** A metadata value has a different type than the caller requires. */
  WRONG_TYPE: "GGUF_WRONG_TYPE",
  /** A tensor a caller asked for is absent. */
  MISSING_TENSOR: "GGUF_MISSING_TENSOR",
  /** Tensor data was requested from a file parsed without its data. */
  NO_TENSOR_DATA: "GGUF_NO_TENSOR_DATA",
  /** The file could not be opened or read (not found, permission, I/O, an HTTP error). */
  IO: "GGUF_IO",
  /**
   * An HTTP server ignored a byte-range request (answered 200 with the whole file) for a file too
   * large to download whole; see `openHttpSource`'s `maxFullDownloadBytes`.
   */
  RANGE_UNSUPPORTED: "GGUF_RANGE_UNSUPPORTED",
  /** A function that needs Node (file paths, file descriptors) was called from the browser build. */
  NODE_ONLY: "GGUF_NODE_ONLY",
  /** The writer was given something it cannot write (bad name, shape, size, value). */
  INVALID_WRITE: "GGUF_INVALID_WRITE",
} as const;

export type GgufErrorCode = (typeof GgufErrorCode)[keyof typeof GgufErrorCode];

/**
 * Any problem with a GGUF file or with a request against one. `offset` is the byte offset in
 * the file where the problem was found, when there is one.
 */
export class GgufError extends BitnetError {
  declare readonly code: GgufErrorCode;
  /** Byte offset in the file where the problem was detected (absent for non-positional errors). */
  readonly offset: number | undefined;

  constructor(
    code: GgufErrorCode,
    message: string,
    options?: { offset?: number | undefined; cause?: unknown },
  ) {
    super(code, message, { cause: options?.cause });
    this.offset = options?.offset;
  }
}
