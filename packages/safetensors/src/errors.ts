import { BitnetError } from "@bitnet-ts/errors";

/** Stable codes of every way a safetensors file is rejected. */
export const SafetensorsErrorCode = {
  /** The file is shorter than its 8-byte header length, or than the header it announces. */
  TRUNCATED: "SAFETENSORS_TRUNCATED",
  /** The header length exceeds the named limit or the file. */
  HEADER_TOO_LARGE: "SAFETENSORS_HEADER_TOO_LARGE",
  /** The header is not valid UTF-8 JSON, not an object, or has duplicate keys. */
  BAD_HEADER: "SAFETENSORS_BAD_HEADER",
  /** A tensor entry is malformed: missing fields, unknown dtype, bad shape or offsets. */
  BAD_TENSOR: "SAFETENSORS_BAD_TENSOR",
  /** A tensor's byte range does not match its dtype × shape. */
  SIZE_MISMATCH: "SAFETENSORS_SIZE_MISMATCH",
  /** A tensor's bytes lie outside the data section, or overlap another tensor's. */
  OUT_OF_BOUNDS: "SAFETENSORS_OUT_OF_BOUNDS",
  /** The asked-for tensor is not in the file. */
  MISSING_TENSOR: "SAFETENSORS_MISSING_TENSOR",
  /** A sharded checkpoint's index is malformed or names a missing shard. */
  BAD_INDEX: "SAFETENSORS_BAD_INDEX",
  /** The file could not be read. */
  IO: "SAFETENSORS_IO",
} as const;

export type SafetensorsErrorCode = (typeof SafetensorsErrorCode)[keyof typeof SafetensorsErrorCode];

export class SafetensorsError extends BitnetError {
  constructor(code: SafetensorsErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
