import { BitnetError } from "@bitnet-ts/errors";

export const GenerationErrorCode = {
  /** The prompt does not fit in the context. */
  PROMPT_TOO_LONG: "GENERATION_PROMPT_TOO_LONG",
  /** An option has an invalid value. */
  BAD_OPTION: "GENERATION_BAD_OPTION",
  /** The generator was disposed. */
  DISPOSED: "GENERATION_DISPOSED",
} as const;

export type GenerationErrorCode = (typeof GenerationErrorCode)[keyof typeof GenerationErrorCode];

export class GenerationError extends BitnetError {
  declare readonly code: GenerationErrorCode;
  constructor(code: GenerationErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
