/**
 * Pre-tokenizers: split raw text into the pieces BPE runs on, exactly as llama.cpp does.
 *
 * `\s` is spelled out as llama.cpp's whitespace set (Unicode White_Space: it includes U+0085
 * and excludes U+FEFF, unlike JavaScript's `\s`), so splits match llama.cpp byte for byte.
 */
import { TokenizerError, TokenizerErrorCode } from "./errors";

/** Splits one raw-text fragment into pre-tokens. */
export type PreTokenizer = (text: string) => string[];

const WS = "\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const S = `[${WS}]`;
const NOT_S = `[^${WS}]`;

/**
 * The LLaMA-3 pattern (tokenizer.json's, with the case-insensitive contractions spelled out):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 */
const LLAMA3_SOURCE = [
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])",
  "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+",
  "\\p{N}{1,3}",
  ` ?[^${WS}\\p{L}\\p{N}]+[\\r\\n]*`,
  `${S}*[\\r\\n]+`,
  `${S}+(?!${NOT_S})`,
  `${S}+`,
].join("|");

/** GPT-2's pattern (llama.cpp's "gpt-2" and the second stage of its default set). */
const GPT2_SOURCE = `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${WS}\\p{L}\\p{N}]+|${S}+(?!${NOT_S})`;

/**
 * Splits by a pattern, keeping the matches and the text between them (llama.cpp's
 * unicode_regex_split keeps "gaps" as pieces of their own).
 */
function splitKeepingGaps(pieces: string[], pattern: RegExp): string[] {
  const out: string[] = [];
  for (const piece of pieces) {
    pattern.lastIndex = 0;
    let last = 0;
    for (let m = pattern.exec(piece); m !== null; m = pattern.exec(piece)) {
      if (m[0].length === 0) {
        pattern.lastIndex++;
        continue;
      }
      if (m.index > last) {
        out.push(piece.slice(last, m.index));
      }
      out.push(m[0]);
      last = m.index + m[0].length;
    }
    if (last < piece.length) {
      out.push(piece.slice(last));
    }
  }
  return out;
}

function single(source: string): PreTokenizer {
  const pattern = new RegExp(source, "gu");
  return (text) => splitKeepingGaps([text], pattern);
}

/** The LLaMA-3 pre-tokenizer (HF tokenizer.json; llama.cpp's "llama3"/"llama-bpe"). */
export const llama3PreTokenizer: PreTokenizer = single(LLAMA3_SOURCE);

/** GPT-2's pre-tokenizer (llama.cpp's "gpt-2"). */
export const gpt2PreTokenizer: PreTokenizer = single(GPT2_SOURCE);

const DEFAULT_STAGES = ["[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_SOURCE, "\\p{N}+", "[0-9][0-9][0-9]"].map(
  (source) => new RegExp(source, "gu"),
);

/**
 * llama.cpp's DEFAULT pre-tokenizer, used when a GGUF has no `tokenizer.ggml.pre` (as the
 * released 2B-4T file): four patterns applied one after another, each splitting the pieces the
 * previous one produced. This is what bitnet.cpp tokenizes that file with.
 */
export const llamaCppDefaultPreTokenizer: PreTokenizer = (text) => {
  let pieces = [text];
  for (const stage of DEFAULT_STAGES) {
    pieces = splitKeepingGaps(pieces, stage);
  }
  return pieces;
};

/** How to pre-tokenize when the file does not say (`tokenizer.ggml.pre` absent). */
export type PreTokenizerMode =
  /** LLaMA-3's pattern with whole-word vocabulary hits (HF semantics; right for 2B-4T). */
  | "llama3"
  /** llama.cpp's default patterns without whole-word hits: bit-compatible with bitnet.cpp. */
  | "llama.cpp";

export interface PreTokenizerChoice {
  readonly split: PreTokenizer;
  /** Emit a whole pre-token as one id when it is in the vocabulary (LLaMA-3's ignore_merges). */
  readonly ignoreMerges: boolean;
  readonly name: string;
}

/** Picks the pre-tokenizer for a byte-level BPE vocabulary, like llama.cpp's loader. */
export function choosePreTokenizer(
  pre: string | undefined,
  whenAbsent: PreTokenizerMode,
): PreTokenizerChoice {
  if (pre === undefined || pre === "default") {
    return whenAbsent === "llama3"
      ? { split: llama3PreTokenizer, ignoreMerges: true, name: "llama3" }
      : { split: llamaCppDefaultPreTokenizer, ignoreMerges: false, name: "llama.cpp-default" };
  }
  if (pre === "llama3" || pre === "llama-v3" || pre === "llama-bpe") {
    return { split: llama3PreTokenizer, ignoreMerges: true, name: "llama3" };
  }
  if (pre === "gpt-2" || pre === "gpt2") {
    return { split: gpt2PreTokenizer, ignoreMerges: false, name: "gpt-2" };
  }
  throw new TokenizerError(
    TokenizerErrorCode.UNSUPPORTED,
    `could not build a tokenizer - pre-tokenizer "${pre}" is not supported.\nSupported: llama3 / llama-v3 / llama-bpe, gpt-2, or none.`,
  );
}
