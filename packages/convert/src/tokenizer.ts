/**
 * The tokenizer of a checkpoint as GGUF metadata: byte-level BPE from tokenizer.json (LLaMA-3,
 * the 2B-4T models) or SentencePiece from tokenizer.model (LLaMA-2, the bitnet_b1_58 models),
 * plus BOS/EOS, add_bos and the chat template from tokenizer_config.json.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { HfConfig } from "./config";
import { readJson } from "./config";
import { ConvertError, ConvertErrorCode } from "./errors";

/** llama.cpp token types. */
const NORMAL = 1;
const CONTROL = 3;
const USER_DEFINED = 4;
const UNUSED = 5;

export interface GgufVocab {
  readonly model: "gpt2" | "llama";
  readonly tokens: readonly string[];
  readonly scores: Float32Array | undefined;
  readonly tokenTypes: Int32Array;
  readonly merges: readonly string[] | undefined;
  readonly bos: number;
  readonly eos: number;
  readonly unk: number | undefined;
  readonly addBos: boolean;
  readonly chatTemplate: string | undefined;
}

function bad(message: string): never {
  throw new ConvertError(
    ConvertErrorCode.BAD_TOKENIZER,
    `could not convert the tokenizer - ${message}.`,
  );
}

function tokenContent(value: unknown): string | undefined {
  if (typeof value === "string") {
    return value;
  }
  if (
    value !== null &&
    typeof value === "object" &&
    typeof (value as { content?: unknown }).content === "string"
  ) {
    return (value as { content: string }).content;
  }
  return undefined;
}

function chatTemplateOf(tc: Record<string, unknown>): string | undefined {
  const t = tc["chat_template"];
  if (typeof t === "string") {
    return t;
  }
  if (Array.isArray(t)) {
    const named = t.find((e) => (e as { name?: string }).name === "default") ?? t[0];
    return typeof (named as { template?: unknown })?.template === "string"
      ? (named as { template: string }).template
      : undefined;
  }
  return undefined;
}

function readTokenizerConfig(dir: string): Record<string, unknown> {
  const file = path.join(dir, "tokenizer_config.json");
  if (!fs.existsSync(file)) {
    return {};
  }
  const tc = readJson(file, "the tokenizer config");
  return tc !== null && typeof tc === "object"
    ? (tc as Record<string, unknown>)
    : bad("tokenizer_config.json is not an object");
}

/** Reads whichever tokenizer the folder has (tokenizer.json preferred for BPE). */
export function readVocab(dir: string, config: HfConfig): GgufVocab {
  const json = path.join(dir, "tokenizer.json");
  const spm = path.join(dir, "tokenizer.model");
  const tc = readTokenizerConfig(dir);
  if (fs.existsSync(spm)) {
    return sentencePieceVocab(fs.readFileSync(spm), tc, config);
  }
  if (fs.existsSync(json)) {
    return bpeVocab(readJson(json, "the tokenizer"), tc, config);
  }
  throw new ConvertError(
    ConvertErrorCode.MISSING_FILE,
    `could not convert - ${dir} has neither tokenizer.json nor tokenizer.model.`,
  );
}

function idOf(tokens: readonly string[], content: string | undefined): number | undefined {
  if (content === undefined) {
    return undefined;
  }
  const i = tokens.indexOf(content);
  return i < 0 ? undefined : i;
}

function bpeVocab(raw: unknown, tc: Record<string, unknown>, config: HfConfig): GgufVocab {
  const t = raw as {
    model?: { type?: unknown; vocab?: unknown; merges?: unknown };
    added_tokens?: unknown;
  };
  if (t?.model?.type !== "BPE") {
    bad(
      `tokenizer.json model.type is ${JSON.stringify(t?.model?.type)}; only byte-level "BPE" is supported`,
    );
  }
  const vocab = t.model.vocab;
  if (vocab === null || typeof vocab !== "object" || Array.isArray(vocab)) {
    bad("tokenizer.json model.vocab is not an object");
  }
  const entries: [string, number, number][] = Object.entries(vocab as Record<string, unknown>).map(
    ([token, id]) => {
      if (!Number.isSafeInteger(id) || (id as number) < 0 || (id as number) > 10_000_000) {
        bad(`token ${JSON.stringify(token)} has id ${JSON.stringify(id)}`);
      }
      return [token, id as number, NORMAL];
    },
  );
  for (const a of Array.isArray(t.added_tokens) ? t.added_tokens : []) {
    const { id, content, special } = a as { id?: unknown; content?: unknown; special?: unknown };
    if (
      !Number.isSafeInteger(id) ||
      typeof content !== "string" ||
      (id as number) < 0 ||
      (id as number) > 10_000_000
    ) {
      bad(`added token ${JSON.stringify(a)} needs an integer id and string content`);
    }
    entries.push([content, id as number, special === true ? CONTROL : USER_DEFINED]);
  }
  let size = config.vocab_size;
  for (const [, id] of entries) {
    size = Math.max(size, id + 1);
  }
  const tokens: string[] = new Array(size);
  const types = new Int32Array(size);
  for (const [token, id, type] of entries) {
    tokens[id] = token;
    types[id] = type;
  }
  for (let i = 0; i < size; i++) {
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`; // a hole in the id space, as llama.cpp's converter fills it
      types[i] = UNUSED;
    }
  }
  const merges = (
    Array.isArray(t.model.merges)
      ? t.model.merges
      : bad("tokenizer.json model.merges is not a list")
  ).map((m: unknown) => {
    if (typeof m === "string") {
      return m;
    }
    if (Array.isArray(m) && m.length === 2 && m.every((x) => typeof x === "string")) {
      return `${m[0]} ${m[1]}`;
    }
    return bad(`merge ${JSON.stringify(m)} is neither "a b" nor ["a", "b"]`);
  });
  const eosConfig = Array.isArray(config.eos_token_id)
    ? config.eos_token_id[0]
    : config.eos_token_id;
  const bos =
    idOf(tokens, tokenContent(tc["bos_token"])) ??
    config.bos_token_id ??
    bad("no BOS token (tokenizer_config bos_token or config bos_token_id)");
  const eos =
    idOf(tokens, tokenContent(tc["eos_token"])) ??
    eosConfig ??
    bad("no EOS token (tokenizer_config eos_token or config eos_token_id)");
  return {
    model: "gpt2",
    tokens,
    scores: undefined,
    tokenTypes: types,
    merges,
    bos,
    eos,
    unk: undefined,
    addBos: typeof tc["add_bos_token"] === "boolean" ? (tc["add_bos_token"] as boolean) : true,
    chatTemplate: chatTemplateOf(tc),
  };
}

/** A minimal protobuf reader for SentencePiece's ModelProto (only the pieces are needed). */
function sentencePieceVocab(
  bytes: Uint8Array,
  tc: Record<string, unknown>,
  config: HfConfig,
): GgufVocab {
  let at = 0;
  const varint = (end: number): number => {
    let v = 0;
    let shift = 0;
    for (;;) {
      if (at >= end || shift > 49) {
        bad("tokenizer.model is truncated or malformed (varint)");
      }
      const b = bytes[at++]!;
      v += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if ((b & 0x80) === 0) {
        return v;
      }
    }
  };
  const skip = (wire: number, end: number): void => {
    if (wire === 0) {
      varint(end);
    } else if (wire === 1) {
      at += 8;
    } else if (wire === 2) {
      // Read the length first: `at += varint(end)` would add it to `at` as it was before the
      // length's own bytes were consumed.
      const length = varint(end);
      at += length;
    } else if (wire === 5) {
      at += 4;
    } else {
      bad(`tokenizer.model has an unsupported wire type ${wire}`);
    }
    if (at > end) {
      bad("tokenizer.model is truncated");
    }
  };
  const tokens: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  // ignoreBOM: a piece that is U+FEFF itself must survive decoding.
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  while (at < bytes.length) {
    const key = varint(bytes.length);
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (field !== 1 || wire !== 2) {
      skip(wire, bytes.length);
      continue;
    }
    const len = varint(bytes.length);
    const end = at + len;
    if (end > bytes.length) {
      bad("tokenizer.model is truncated (piece)");
    }
    let piece: string | undefined;
    let score = 0;
    let type = NORMAL;
    while (at < end) {
      const k = varint(end);
      const f = Math.floor(k / 8);
      const w = k % 8;
      if (f === 1 && w === 2) {
        const n = varint(end);
        if (at + n > end) {
          bad("tokenizer.model is truncated (piece text)");
        }
        try {
          piece = decoder.decode(bytes.subarray(at, at + n));
        } catch {
          bad(`piece ${tokens.length} is not valid UTF-8`);
        }
        at += n;
      } else if (f === 2 && w === 5) {
        if (at + 4 > end) {
          bad("tokenizer.model is truncated (score)");
        }
        score = new DataView(bytes.buffer, bytes.byteOffset + at, 4).getFloat32(0, true);
        at += 4;
      } else if (f === 3 && w === 0) {
        type = varint(end);
      } else {
        skip(w, end);
      }
    }
    if (piece === undefined) {
      bad(`piece ${tokens.length} has no text`);
    }
    tokens.push(piece);
    scores.push(score);
    types.push(type >= 1 && type <= 6 ? type : NORMAL);
    if (tokens.length > 10_000_000) {
      bad("tokenizer.model has more than 10 million pieces");
    }
  }
  if (tokens.length === 0) {
    bad("tokenizer.model has no pieces");
  }
  const bos =
    idOf(tokens, tokenContent(tc["bos_token"])) ??
    idOf(tokens, "<s>") ??
    config.bos_token_id ??
    bad("no BOS token");
  const eos =
    idOf(tokens, tokenContent(tc["eos_token"])) ?? idOf(tokens, "</s>") ?? bad("no EOS token");
  return {
    model: "llama",
    tokens,
    scores: Float32Array.from(scores),
    tokenTypes: Int32Array.from(types),
    merges: undefined,
    bos,
    eos,
    unk: idOf(tokens, "<unk>") ?? types.indexOf(2),
    addBos: typeof tc["add_bos_token"] === "boolean" ? (tc["add_bos_token"] as boolean) : true,
    chatTemplate: chatTemplateOf(tc),
  };
}
