import { BitnetError } from "@bitnet-ts/errors";

/** Stable codes of every way a conversion is refused. */
export const ConvertErrorCode = {
  /** A file the checkpoint needs (config.json, weights, tokenizer) is missing or unreadable. */
  MISSING_FILE: "CONVERT_MISSING_FILE",
  /** config.json is not valid JSON or lacks / mistypes a key. */
  BAD_CONFIG: "CONVERT_BAD_CONFIG",
  /** A tensor the layout needs is missing. */
  MISSING_TENSOR: "CONVERT_MISSING_TENSOR",
  /** A tensor's shape or dtype does not match the config. */
  BAD_TENSOR: "CONVERT_BAD_TENSOR",
  /** The checkpoint is none of the supported layouts. */
  UNSUPPORTED_LAYOUT: "CONVERT_UNSUPPORTED_LAYOUT",
  /** The tokenizer files are malformed. */
  BAD_TOKENIZER: "CONVERT_BAD_TOKENIZER",
  /** An option combination cannot be honoured (e.g. I2_S under the mainline arch). */
  BAD_OPTION: "CONVERT_BAD_OPTION",
  /** The requested conversion would change values (scales not representable, mixed block scales). */
  LOSSY: "CONVERT_LOSSY",
} as const;

export type ConvertErrorCode = (typeof ConvertErrorCode)[keyof typeof ConvertErrorCode];

export class ConvertError extends BitnetError {
  constructor(code: ConvertErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
