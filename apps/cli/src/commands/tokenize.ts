/**
 * `bitnet tokenize` and `bitnet detokenize`: the model's tokenizer from the command line,
 * like llama.cpp's llama-tokenize.
 */
import { isUtf8 } from "node:buffer";
import * as fs from "node:fs";
import { readGgufFile } from "@bitnet-ts/gguf";
import { type PreTokenizerMode, Tokenizer } from "@bitnet-ts/tokenizers";
import { CliInputError } from "../errors";

export async function loadTokenizer(modelPath: string, pre?: string): Promise<Tokenizer> {
  if (pre !== undefined && pre !== "llama3" && pre !== "llama.cpp") {
    throw new CliInputError(`could not use --pre ${pre} - expected "llama3" or "llama.cpp".`);
  }
  const file = await readGgufFile(modelPath);
  return Tokenizer.fromGguf(
    file.metadata,
    pre === undefined ? {} : { preTokenizer: pre as PreTokenizerMode },
  );
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Reads a text file as strict UTF-8 ("-": standard input to its end); invalid bytes (e.g. encoded
 * lone surrogates) are an error.
 */
export function readTextFile(path: string): string {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(path === "-" ? 0 : path);
  } catch (error) {
    throw new CliInputError(`could not read "${path}" - ${(error as Error).message}.`);
  }
  try {
    return strictUtf8.decode(bytes);
  } catch {
    // Find where it breaks, for the message.
    let good = 0;
    for (let n = 1; n <= bytes.length; n++) {
      try {
        strictUtf8.decode(bytes.subarray(0, n));
        good = n;
      } catch {
        if (n - good > 4) {
          break;
        }
      }
    }
    throw new CliInputError(
      `could not read "${path}" - it is not valid UTF-8 (bad byte 0x${bytes[good]?.toString(16).padStart(2, "0")} at offset ${good}; unpaired surrogates and binary files are rejected).`,
    );
  }
}

export interface TokenizeOptions {
  model: string;
  file?: string;
  bos: boolean;
  special?: boolean;
  json?: boolean;
  pre?: string;
}

export async function runTokenize(
  text: string | undefined,
  options: TokenizeOptions,
): Promise<string> {
  if ((text === undefined) === (options.file === undefined)) {
    throw new CliInputError(
      "could not tokenize - give the text as an argument or with -f FILE (one of them).",
    );
  }
  const input = text ?? readTextFile(options.file!);
  const tokenizer = await loadTokenizer(options.model, options.pre);
  const ids = tokenizer.encode(input, {
    addBos: options.bos,
    parseSpecial: options.special === true,
  });
  if (options.json) {
    return `${JSON.stringify(ids)}\n`;
  }
  // llama-tokenize style: one token per line, id and the piece it stands for.
  return `${ids.map((id) => `${String(id).padStart(6)} -> ${describePiece(tokenizer.tokenBytes(id, { special: true }))}`).join("\n")}\n`;
}

/** A piece as a JSON string, or its bytes when it is only part of a UTF-8 character. */
function describePiece(bytes: Uint8Array): string {
  if (isUtf8(bytes)) {
    return JSON.stringify(Buffer.from(bytes).toString("utf8"));
  }
  return `bytes [${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ")}]`;
}

/**
 * Token ids from a comma- or space-separated list; `action` and `flag` name the command and
 * option in errors (detokenize's --ids, eval's --tokens).
 */
export function parseIds(list: string, action = "detokenize", flag = "--ids"): number[] {
  if (list.trim() === "") {
    throw new CliInputError(
      `could not ${action} - ${flag} is empty; give ids like ${flag} 128000,9906,1917.`,
    );
  }
  const parts = list.trim().split(/\s*,\s*|\s+/);
  return parts.map((p, i) => {
    if (p === "") {
      throw new CliInputError(
        `could not ${action} - ${flag} has an empty element at position ${i + 1}; give ids like ${flag} 128000,9906,1917.`,
      );
    }
    if (!/^\d+$/.test(p)) {
      throw new CliInputError(
        `could not ${action} - "${p}" is not a token id (${flag} takes non-negative integers).`,
      );
    }
    return Number(p);
  });
}

export async function runDetokenize(options: {
  model: string;
  ids: string;
  special?: boolean;
}): Promise<string> {
  const ids = parseIds(options.ids);
  const tokenizer = await loadTokenizer(options.model);
  const bad = ids.find((id) => id >= tokenizer.vocabSize);
  if (bad !== undefined) {
    throw new CliInputError(
      `could not detokenize - token id ${bad} is out of range (the vocabulary has ${tokenizer.vocabSize} tokens).`,
    );
  }
  return `${tokenizer.decode(ids, { special: options.special === true })}\n`;
}
