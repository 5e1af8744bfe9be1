import { BitnetError } from "@bitnet-ts/errors";

export const TokenizerErrorCode = {
  /** The model file lacks a key the tokenizer needs (e.g. `tokenizer.ggml.tokens`). */
  MISSING_KEY: "TOKENIZER_MISSING_KEY",
  /** `tokenizer.ggml.model` or `tokenizer.ggml.pre` names a tokenizer we do not implement. */
  UNSUPPORTED: "TOKENIZER_UNSUPPORTED",
  /** The vocabulary metadata is inconsistent (array lengths, ids out of range, bad merges). */
  INVALID_VOCAB: "TOKENIZER_INVALID_VOCAB",
  /** Text to encode is not well-formed (unpaired surrogates, invalid UTF-8 bytes). */
  INVALID_TEXT: "TOKENIZER_INVALID_TEXT",
  /** A token id is not an integer in [0, vocab size). */
  INVALID_TOKEN: "TOKENIZER_INVALID_TOKEN",
  /** A chat template failed to parse or render. */
  TEMPLATE: "TOKENIZER_TEMPLATE",
} as const;

export type TokenizerErrorCode = (typeof TokenizerErrorCode)[keyof typeof TokenizerErrorCode];

export class TokenizerError extends BitnetError {
  declare readonly code: TokenizerErrorCode;

  constructor(code: TokenizerErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
