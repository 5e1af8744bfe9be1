/**
 * Checkpoint folder → GGUF. Metadata keys and tensor names follow bitnet.cpp's converter for
 * I2_S (arch `bitnet-b1.58`) and mainline llama.cpp's for the TQ types (arch `bitnet`). The
 * output depends only on the input files and options (no timestamps), so converting twice gives
 * byte-identical files. Tensors are produced one at a time while the file streams out.
 */
import * as path from "node:path";
import { findGgmlTypeByName, GgufWriter, gguf, type WriteProgress } from "@bitnet-ts/gguf";
import {
  encodeF16,
  encodeF32,
  packI2S,
  packTQ1_0,
  packTQ2_0,
  quantizeQ6_K,
  quantizeQ8_0,
} from "@bitnet-ts/quantization";
import {
  type Checkpoint,
  checkTensors,
  GGUF_PROJECTION,
  openCheckpoint,
  type PROJECTIONS,
  projectionShape,
  readFloat,
  readTernary,
  subNormNames,
  type TernaryTensor,
} from "./checkpoint";
import { ConvertError, ConvertErrorCode } from "./errors";
import { type GgufVocab, readVocab } from "./tokenizer";

export type TernaryType = "I2_S" | "TQ2_0" | "TQ1_0";
export type EmbeddingType = "F16" | "F32" | "Q8_0" | "Q6_K";
export type ConvertArch = "bitnet-b1.58" | "bitnet";

export interface ConvertOptions {
  readonly type: TernaryType;
  /** Type of the token embedding (and an untied output head); default F16. */
  readonly embed?: EmbeddingType;
  /** Default: bitnet-b1.58 for I2_S (bitnet.cpp), bitnet for TQ types (mainline llama.cpp). */
  readonly arch?: ConvertArch;
  readonly onProgress?: WriteProgress;
  /**
   * Called with each note (also returned in the summary) as soon as it is known, before any byte
   * is written: defaulted config keys, a tied head, projections written in a fallback type.
   */
  readonly onLog?: (message: string) => void;
}

export interface ConvertSummary {
  readonly layout: Checkpoint["layout"];
  readonly arch: ConvertArch;
  readonly type: TernaryType;
  readonly tensors: number;
  readonly bytes: number;
  /** Lines worth telling the user (e.g. an activation the arch does not imply). */
  readonly notes: readonly string[];
  /**
   * Projections whose rows do not fit the ternary type's blocks, and the type each was written
   * in instead (see ternaryFallback).
   */
  readonly fallbacks: readonly { readonly tensor: string; readonly type: FallbackType }[];
}

/** What a ternary projection is written as when its rows do not fit the requested type. */
export type FallbackType = "F16" | "F32";

/**
 * The type a projection with rows of `rowLength` is written in under `type`: `type` itself when
 * the row length is a multiple of its block (256 for TQ1_0/TQ2_0, 128 for I2_S), else a float
 * type that holds every value the ternary type would have held exactly, as llama.cpp's converter
 * falls back to F16 for such rows. For the TQ types that is F16 (their block scale is an f16, so
 * ±f16(scale) is what they store); for I2_S, whose one scale is an f32, it is F32. Q8_0 (block
 * 32) is not used: 127·f16(scale/127) is not the scale in general, and engine-core does not run
 * Q8_0 projections. engine-core accepts F16 and F32 projections and its reference backend and
 * the CPU backend (kernels-cpu) run them, as do llama.cpp and bitnet.cpp.
 */
export function ternaryFallback(type: TernaryType, rowLength: number): TernaryType | FallbackType {
  const block = findGgmlTypeByName(type)!.blockSize;
  if (rowLength % block === 0) {
    return type;
  }
  return type === "I2_S" ? "F32" : "F16";
}

/** The float values a ternary tensor stands for, in `type` (F16 rounds the scale once, as TQ blocks do). */
export function encodeTernaryAsFloat(
  type: FallbackType,
  t: Pick<TernaryTensor, "values" | "scale">,
): Uint8Array {
  const w = new Float32Array(t.values.length);
  const scale = Math.fround(t.scale);
  for (let i = 0; i < w.length; i++) {
    w[i] = t.values[i]! * scale;
  }
  return type === "F16" ? encodeF16(w) : encodeF32(w);
}

/** llama_ftype of the file: bitnet.cpp's I2_S = 40; mainline's TQ1_0 = 36, TQ2_0 = 37. */
export const FILE_TYPE: Readonly<Record<TernaryType, number>> = { I2_S: 40, TQ1_0: 36, TQ2_0: 37 };

/** Packs ternary values in `type`. TQ blocks get d = the tensor scale, or 0 where all-zero (as ggml's absmax). */
export function packTernary(
  type: TernaryType,
  t: Pick<TernaryTensor, "values" | "scale">,
): Uint8Array {
  if (type === "I2_S") {
    return packI2S(t.values, t.scale);
  }
  const scales = new Float32Array(t.values.length / 256);
  for (let b = 0; b < scales.length; b++) {
    for (let i = 256 * b; i < 256 * b + 256; i++) {
      if (t.values[i] !== 0) {
        scales[b] = t.scale;
        break;
      }
    }
  }
  return type === "TQ2_0" ? packTQ2_0(t.values, scales) : packTQ1_0(t.values, scales);
}

export function encodeEmbedding(type: EmbeddingType, values: Float32Array): Uint8Array {
  switch (type) {
    case "F16":
      return encodeF16(values);
    case "F32":
      return encodeF32(values);
    case "Q8_0":
      return quantizeQ8_0(values);
    case "Q6_K":
      return quantizeQ6_K(values);
  }
}

/** Tokenizer metadata as the converter of `arch` writes it. */
export function writeVocab(
  w: GgufWriter,
  vocab: GgufVocab,
  arch: ConvertArch,
  type: TernaryType,
): void {
  w.set("tokenizer.ggml.model", gguf.string(vocab.model));
  if (vocab.model === "gpt2" && arch === "bitnet") {
    w.set("tokenizer.ggml.pre", gguf.string("llama-bpe")); // mainline names the LLaMA-3 pre-tokenizer
  }
  w.set("tokenizer.ggml.tokens", gguf.stringArray([...vocab.tokens]));
  if (vocab.scores !== undefined) {
    w.set("tokenizer.ggml.scores", gguf.float32Array(vocab.scores));
  } else if (type === "I2_S") {
    // bitnet.cpp's BPE vocabulary: score 0 for normal tokens, −1000 for control tokens.
    w.set(
      "tokenizer.ggml.scores",
      gguf.float32Array(Float32Array.from(vocab.tokenTypes, (t) => (t === 3 ? -1000 : 0))),
    );
  }
  w.set("tokenizer.ggml.token_type", gguf.int32Array(vocab.tokenTypes));
  if (vocab.merges !== undefined) {
    w.set("tokenizer.ggml.merges", gguf.stringArray([...vocab.merges]));
  }
  w.set("tokenizer.ggml.bos_token_id", gguf.uint32(vocab.bos));
  w.set("tokenizer.ggml.eos_token_id", gguf.uint32(vocab.eos));
  if (vocab.unk !== undefined && vocab.unk >= 0) {
    w.set("tokenizer.ggml.unknown_token_id", gguf.uint32(vocab.unk));
  }
  w.set("tokenizer.ggml.add_bos_token", gguf.bool(vocab.addBos));
  if (vocab.model === "llama") {
    w.set("tokenizer.ggml.add_eos_token", gguf.bool(false));
    w.set("tokenizer.ggml.add_space_prefix", gguf.bool(true));
  }
  if (vocab.chatTemplate !== undefined) {
    w.set("tokenizer.chat_template", gguf.string(vocab.chatTemplate));
  }
}

/** Builds the GGUF writer for a checkpoint (tensor data is produced lazily while writing). */
export function buildConversion(
  ck: Checkpoint,
  options: ConvertOptions,
): { writer: GgufWriter; summary: ConvertSummary } {
  const type = options.type;
  const embed = options.embed ?? "F16";
  const arch: ConvertArch = options.arch ?? (type === "I2_S" ? "bitnet-b1.58" : "bitnet");
  if (type === "I2_S" && arch === "bitnet") {
    throw new ConvertError(
      ConvertErrorCode.BAD_OPTION,
      "could not convert - I2_S is bitnet.cpp's type and belongs under --arch bitnet-b1.58; mainline llama.cpp (arch bitnet) cannot load it. Use --type tq2_0 or tq1_0 for mainline.",
    );
  }
  const c = ck.config;
  const d = ck.nEmbd;
  const ff = ck.nFf;
  const vocab = readVocab(ck.dir, c);
  const vocabSize = vocab.tokens.length;
  if (vocabSize !== c.vocab_size) {
    throw new ConvertError(
      ConvertErrorCode.BAD_TOKENIZER,
      `could not convert - the tokenizer has ${vocabSize} tokens but config.json vocab_size is ${c.vocab_size}.`,
    );
  }
  checkTensors(ck, vocabSize);
  const embedBlock = findGgmlTypeByName(embed)!.blockSize;
  if (d % embedBlock !== 0) {
    throw new ConvertError(
      ConvertErrorCode.BAD_OPTION,
      `could not convert - the token embedding's rows (hidden_size ${d}) are not a multiple of the ${embed} block of ${embedBlock}; choose --embed f16, f32${embedBlock > 32 && d % 32 === 0 ? " or q8_0" : ""}.`,
    );
  }
  const r = ck.resolved;
  const headDim = d / ck.nHead;
  const notes: string[] = [...ck.notes];
  const act =
    r.hiddenAct === "relu2" || r.hiddenAct === "relu_squared"
      ? "relu2"
      : r.hiddenAct === "silu"
        ? "silu"
        : undefined;
  if (act === undefined) {
    throw new ConvertError(
      ConvertErrorCode.BAD_CONFIG,
      `could not convert - config.json hidden_act ${JSON.stringify(r.hiddenAct)} is neither "relu2" nor "silu".`,
    );
  }
  const impliedAct = arch === "bitnet" ? "silu" : "relu2";
  const A = arch;
  const w = new GgufWriter();
  const name = path.basename(c._name_or_path ?? ck.dir);
  w.set("general.architecture", gguf.string(A));
  w.set("general.name", gguf.string(name));
  w.set(`${A}.vocab_size`, gguf.uint32(vocabSize));
  w.set(`${A}.context_length`, gguf.uint32(r.contextLength));
  w.set(`${A}.embedding_length`, gguf.uint32(d));
  w.set(`${A}.block_count`, gguf.uint32(ck.nLayer));
  w.set(`${A}.feed_forward_length`, gguf.uint32(ff));
  w.set(`${A}.rope.dimension_count`, gguf.uint32(headDim));
  w.set(`${A}.attention.head_count`, gguf.uint32(ck.nHead));
  w.set(`${A}.attention.head_count_kv`, gguf.uint32(ck.nHeadKv));
  w.set(`${A}.attention.layer_norm_rms_epsilon`, gguf.float32(r.rmsNormEps));
  w.set(`${A}.rope.freq_base`, gguf.float32(r.ropeTheta));
  if (arch === "bitnet") {
    w.set(`${A}.rope.scaling.type`, gguf.string("linear"));
    w.set(`${A}.rope.scaling.factor`, gguf.float32(1));
  }
  if (act !== impliedAct) {
    // Not written by the reference converters: bitnet-ts reads it (llama.cpp ignores it), so a
    // 2B-4T checkpoint under the mainline arch still computes squared ReLU here.
    w.set(`${A}.hidden_act`, gguf.string(act));
    notes.push(
      `the checkpoint's FFN uses ${act}, but arch ${A} implies ${impliedAct}: bitnet-ts reads ${A}.hidden_act from the file; llama.cpp will compute ${impliedAct} (use --arch ${act === "relu2" ? "bitnet-b1.58" : "bitnet"} or run other engines with the right activation).`,
    );
  }
  w.set("general.file_type", gguf.uint32(FILE_TYPE[type]));
  writeVocab(w, vocab, arch, type);
  w.set("general.quantization_version", gguf.uint32(2));

  // Tensors, in the released file's order. Every type is decided here, before any byte is
  // written: a projection whose rows do not fit the ternary type's blocks gets a float type.
  const fallbacks: { tensor: string; type: FallbackType }[] = [];
  const f32 = (hf: string, n: number) => () => [encodeF32(readFloat(ck, hf, [n]))];
  w.addTensor("token_embd.weight", embed, [d, vocabSize], () => {
    const e = readFloat(ck, "model.embed_tokens.weight", [vocabSize, d]);
    return [encodeEmbedding(embed, e)];
  });
  w.addTensor("output_norm.weight", "F32", [d], f32("model.norm.weight", d));
  for (let il = 0; il < ck.nLayer; il++) {
    const g = `blk.${il}`;
    const p = `model.layers.${il}`;
    const sub = subNormNames(ck.layout, il);
    const proj = (pr: (typeof PROJECTIONS)[number]): void => {
      const [rows, cols] = projectionShape(ck, pr);
      const tensorName = `${g}.${GGUF_PROJECTION[pr]}.weight`;
      const as = ternaryFallback(type, cols);
      if (as !== type) {
        const block = findGgmlTypeByName(type)!.blockSize;
        fallbacks.push({ tensor: tensorName, type: as as FallbackType });
        notes.push(
          `${tensorName}: row length ${cols} is not a multiple of ${block}; written as ${as}.`,
        );
        w.addTensor(tensorName, as, [cols, rows], () => [
          encodeTernaryAsFloat(as as FallbackType, readTernary(ck, il, pr)),
        ]);
        return;
      }
      w.addTensor(tensorName, type, [cols, rows], () => [
        packTernary(type, readTernary(ck, il, pr)),
      ]);
    };
    w.addTensor(`${g}.attn_norm.weight`, "F32", [d], f32(`${p}.input_layernorm.weight`, d));
    proj("q_proj");
    proj("k_proj");
    proj("v_proj");
    w.addTensor(`${g}.attn_sub_norm.weight`, "F32", [d], f32(sub.attn, d));
    proj("o_proj");
    w.addTensor(`${g}.ffn_norm.weight`, "F32", [d], f32(`${p}.post_attention_layernorm.weight`, d));
    proj("gate_proj");
    proj("up_proj");
    w.addTensor(`${g}.ffn_sub_norm.weight`, "F32", [ff], f32(sub.ffn, ff));
    proj("down_proj");
  }
  if (!ck.tied) {
    w.addTensor("output.weight", embed, [d, vocabSize], () => [
      encodeEmbedding(embed, readFloat(ck, "lm_head.weight", [vocabSize, d])),
    ]);
  }
  return {
    writer: w,
    summary: {
      layout: ck.layout,
      arch,
      type,
      tensors: 2 + 11 * ck.nLayer + (ck.tied ? 0 : 1),
      bytes: w.byteLength,
      notes,
      fallbacks,
    },
  };
}

/** Converts a checkpoint folder to a GGUF file (written atomically). */
export async function convertCheckpoint(
  dir: string,
  outPath: string,
  options: ConvertOptions,
): Promise<ConvertSummary> {
  const ck = openCheckpoint(dir);
  try {
    const { writer, summary } = buildConversion(ck, options);
    for (const note of summary.notes) {
      options.onLog?.(note);
    }
    await writer.writeFile(
      outPath,
      options.onProgress === undefined ? {} : { onProgress: options.onProgress },
    );
    return summary;
  } finally {
    ck.weights.close();
  }
}
