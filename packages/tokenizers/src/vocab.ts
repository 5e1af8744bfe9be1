/**
 * The tokenizer description stored in a GGUF file (`tokenizer.ggml.*`), read and validated.
 * Key names and defaults follow llama.cpp's vocabulary loader.
 */
import { type GgufMetadata, GgufStringList } from "@bitnet-ts/gguf";
import { TokenizerError, TokenizerErrorCode } from "./errors";

/** llama.cpp token types (`tokenizer.ggml.token_type`). */
export const TokenType = {
  UNDEFINED: 0,
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

export type TokenType = (typeof TokenType)[keyof typeof TokenType];

export interface Vocab {
  /** "gpt2" = byte-level BPE, "llama" = SentencePiece BPE. */
  readonly model: "gpt2" | "llama";
  /** `tokenizer.ggml.pre`, when present. */
  readonly pre: string | undefined;
  /** Token texts, kept as the file's UTF-8 bytes (`tokens.get(id)` decodes one). */
  readonly tokens: GgufStringList;
  readonly types: Int32Array;
  readonly scores: Float32Array;
  /** BPE merges ("left right"), as bytes; empty for SentencePiece. */
  readonly merges: GgufStringList;
  readonly bos: number | undefined;
  readonly eos: number | undefined;
  /** End of turn (`<|eot_id|>`), from metadata or detected by its text. */
  readonly eot: number | undefined;
  /** End of message (`<|eom_id|>`), detected by its text. */
  readonly eom: number | undefined;
  readonly unk: number | undefined;
  readonly pad: number | undefined;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly addSpacePrefix: boolean;
  readonly chatTemplate: string | undefined;
}

/** Token texts llama.cpp recognises as end-of-turn when no id is given. */
const EOT_TEXTS = [
  "<|eot_id|>",
  "<|im_end|>",
  "<|end|>",
  "<end_of_turn>",
  "<|endoftext|>",
  "<EOT>",
  "_<EOT>",
  "<｜end▁of▁sentence｜>",
];

export function vocabFromGguf(md: GgufMetadata): Vocab {
  const model = md.getString("tokenizer.ggml.model");
  if (model === undefined) {
    throw new TokenizerError(
      TokenizerErrorCode.MISSING_KEY,
      'could not build a tokenizer - the model file has no tokenizer ("tokenizer.ggml.model" is missing).\nConvert the model with its tokenizer included.',
    );
  }
  if (model !== "gpt2" && model !== "llama") {
    throw new TokenizerError(
      TokenizerErrorCode.UNSUPPORTED,
      `could not build a tokenizer - tokenizer type "${model}" is not supported.\nExpected "gpt2" (byte-level BPE) or "llama" (SentencePiece).`,
    );
  }
  const tokens = md.getStringList("tokenizer.ggml.tokens");
  if (tokens === undefined) {
    throw new TokenizerError(
      TokenizerErrorCode.MISSING_KEY,
      'could not build a tokenizer - "tokenizer.ggml.tokens" is missing.',
    );
  }
  const n = tokens.length;
  if (n === 0) {
    throw new TokenizerError(
      TokenizerErrorCode.INVALID_VOCAB,
      "could not build a tokenizer - the vocabulary is empty.",
    );
  }
  const types = new Int32Array(n).fill(TokenType.NORMAL);
  const typeArray = md.getNumberArray("tokenizer.ggml.token_type");
  if (typeArray !== undefined) {
    checkLength("tokenizer.ggml.token_type", typeArray.length, n);
    types.set(typeArray);
  }
  const scores = new Float32Array(n);
  const scoreArray = md.getNumberArray("tokenizer.ggml.scores");
  if (scoreArray !== undefined) {
    checkLength("tokenizer.ggml.scores", scoreArray.length, n);
    scores.set(scoreArray);
  }
  const merges = md.getStringList("tokenizer.ggml.merges") ?? GgufStringList.from([]);
  if (model === "gpt2" && merges.length === 0) {
    throw new TokenizerError(
      TokenizerErrorCode.MISSING_KEY,
      'could not build a byte-level BPE tokenizer - "tokenizer.ggml.merges" is missing or empty.',
    );
  }
  const id = (key: string, fallback: number | undefined): number | undefined => {
    const value = md.getNumber(key);
    if (value === undefined) {
      return fallback;
    }
    // -1 (or the u32 0xFFFFFFFF) means "none" in llama.cpp conversions.
    if (value === -1 || value === 0xffffffff) {
      return undefined;
    }
    if (!Number.isInteger(value) || value < 0 || value >= n) {
      throw new TokenizerError(
        TokenizerErrorCode.INVALID_VOCAB,
        `could not build a tokenizer - "${key}" is ${value}, outside the vocabulary of ${n} tokens.`,
      );
    }
    return value;
  };
  const byText = (text: string): number | undefined => {
    const i = tokens.indexOf(text);
    return i >= 0 ? i : undefined;
  };
  const pre = md.getString("tokenizer.ggml.pre");
  const llama3Pre = pre === "llama3" || pre === "llama-v3" || pre === "llama-bpe";
  return {
    model,
    pre,
    tokens,
    types,
    scores,
    merges,
    bos: id("tokenizer.ggml.bos_token_id", model === "llama" ? 1 : undefined),
    eos: id("tokenizer.ggml.eos_token_id", model === "llama" ? 2 : undefined),
    eot: id("tokenizer.ggml.eot_token_id", undefined) ?? firstPresent(EOT_TEXTS, byText),
    eom: id("tokenizer.ggml.eom_token_id", undefined) ?? byText("<|eom_id|>"),
    unk: id("tokenizer.ggml.unknown_token_id", model === "llama" ? 0 : undefined),
    pad: id("tokenizer.ggml.padding_token_id", undefined),
    addBos: md.getBoolean("tokenizer.ggml.add_bos_token") ?? (model === "llama" || llama3Pre),
    addEos: md.getBoolean("tokenizer.ggml.add_eos_token") ?? false,
    addSpacePrefix: md.getBoolean("tokenizer.ggml.add_space_prefix") ?? model === "llama",
    chatTemplate: md.getString("tokenizer.chat_template"),
  };
}

function firstPresent(
  texts: readonly string[],
  find: (t: string) => number | undefined,
): number | undefined {
  for (const t of texts) {
    const id = find(t);
    if (id !== undefined) {
      return id;
    }
  }
  return undefined;
}

function checkLength(key: string, got: number, expected: number): void {
  if (got !== expected) {
    throw new TokenizerError(
      TokenizerErrorCode.INVALID_VOCAB,
      `could not build a tokenizer - "${key}" has ${got} entries but the vocabulary has ${expected} tokens.`,
    );
  }
}
