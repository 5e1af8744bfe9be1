/**
 * A BitNet checkpoint folder: its config, its weights (safetensors, possibly sharded) and which
 * of the supported layouts they are in, with every projection turned into ternary values and a
 * per-tensor scale exactly as the reference converters do (docs/formats.md, Hugging Face checkpoints).
 */
import { bf16ToF32, decodeBf16, decodeF16, decodeF32, f16ToF32 } from "@bitnet-ts/quantization";
import {
  openShardedSafetensors,
  type SafetensorsFile,
  type SafetensorsTensorInfo,
} from "@bitnet-ts/safetensors";
import { type HfConfig, type ResolvedConfig, readConfig, resolveConfig } from "./config";
import { ConvertError, ConvertErrorCode } from "./errors";

export type CheckpointLayout = "packed" | "bf16" | "1bitllm";

export const PROJECTIONS = [
  "q_proj",
  "k_proj",
  "v_proj",
  "o_proj",
  "gate_proj",
  "up_proj",
  "down_proj",
] as const;
export type Projection = (typeof PROJECTIONS)[number];

/** GGUF names (llama.cpp's and bitnet.cpp's) of the HF projections. */
export const GGUF_PROJECTION: Readonly<Record<Projection, string>> = {
  q_proj: "attn_q",
  k_proj: "attn_k",
  v_proj: "attn_v",
  o_proj: "attn_output",
  gate_proj: "ffn_gate",
  up_proj: "ffn_up",
  down_proj: "ffn_down",
};

export interface Checkpoint {
  readonly dir: string;
  readonly config: HfConfig;
  /** config.json with transformers' defaults for what it leaves out (see CONFIG_DEFAULTS). */
  readonly resolved: ResolvedConfig;
  readonly layout: CheckpointLayout;
  readonly weights: SafetensorsFile;
  readonly nLayer: number;
  readonly nEmbd: number;
  readonly nFf: number;
  readonly nHead: number;
  readonly nHeadKv: number;
  /** The head is token_embd (no output.weight is written). */
  readonly tied: boolean;
  /** Lines worth telling the user about how the config was read. */
  readonly notes: readonly string[];
}

export interface TernaryTensor {
  /** Row-major [out × in]: GGUF's [ne0 = in, ne1 = out]. */
  readonly values: Int8Array;
  readonly scale: number;
  readonly rows: number;
  readonly cols: number;
}

function part(p: Projection): string {
  return p === "gate_proj" || p === "up_proj" || p === "down_proj" ? "mlp" : "self_attn";
}

export function projectionName(layer: number, p: Projection): string {
  return `model.layers.${layer}.${part(p)}.${p}`;
}

export function subNormNames(
  layout: CheckpointLayout,
  layer: number,
): { attn: string; ffn: string } {
  const p = `model.layers.${layer}`;
  return layout === "1bitllm"
    ? { attn: `${p}.self_attn.inner_attn_ln.weight`, ffn: `${p}.mlp.ffn_layernorm.weight` }
    : { attn: `${p}.self_attn.attn_sub_norm.weight`, ffn: `${p}.mlp.ffn_sub_norm.weight` };
}

function tensor(
  ck: { weights: SafetensorsFile; dir: string },
  name: string,
): SafetensorsTensorInfo {
  const t = ck.weights.tensors.get(name);
  if (t === undefined) {
    throw new ConvertError(
      ConvertErrorCode.MISSING_TENSOR,
      `could not convert - tensor "${name}" is missing from ${ck.dir}.`,
    );
  }
  return t;
}

function expectShape(t: SafetensorsTensorInfo, shape: readonly number[], why: string): void {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new ConvertError(
      ConvertErrorCode.BAD_TENSOR,
      `could not convert - tensor "${t.name}" has shape [${t.shape.join(", ")}] but ${why} needs [${shape.join(", ")}].`,
    );
  }
}

/**
 * An lm_head identical to the embedding is the same tensor saved twice: written once (tied),
 * which is also the only form mainline llama.cpp's `bitnet` arch loads.
 */
function sameBytes(weights: SafetensorsFile, a: string, b: string): boolean {
  const ta = weights.tensors.get(a);
  const tb = weights.tensors.get(b);
  if (
    ta === undefined ||
    tb === undefined ||
    ta.dtype !== tb.dtype ||
    ta.byteLength !== tb.byteLength
  ) {
    return false;
  }
  return Buffer.compare(Buffer.from(weights.read(a)), Buffer.from(weights.read(b))) === 0;
}

/** Opens a checkpoint folder and works out its layout. */
export function openCheckpoint(dir: string): Checkpoint {
  const config = readConfig(dir);
  let weights: SafetensorsFile;
  try {
    weights = openShardedSafetensors(dir);
  } catch (error) {
    throw new ConvertError(
      ConvertErrorCode.MISSING_FILE,
      `could not convert - ${(error as Error).message}`,
      { cause: error },
    );
  }
  const q = weights.tensors.get(`${projectionName(0, "q_proj")}.weight`);
  const has = (name: string) => weights.tensors.has(name);
  let layout: CheckpointLayout;
  if (q === undefined) {
    weights.close();
    throw new ConvertError(
      ConvertErrorCode.MISSING_TENSOR,
      `could not convert - ${dir} has no ${projectionName(0, "q_proj")}.weight; is it a BitNet checkpoint?`,
    );
  }
  if (q.dtype === "U8" && has(`${projectionName(0, "q_proj")}.weight_scale`)) {
    layout = "packed";
  } else if (has(subNormNames("1bitllm", 0).attn)) {
    layout = "1bitllm";
  } else if (has(subNormNames("bf16", 0).attn) && ["BF16", "F16", "F32"].includes(q.dtype)) {
    layout = "bf16";
  } else {
    weights.close();
    throw new ConvertError(
      ConvertErrorCode.UNSUPPORTED_LAYOUT,
      `could not convert - ${dir} is not a supported BitNet layout (q_proj is ${q.dtype} [${q.shape.join(", ")}], no known sub-norm names). Supported: microsoft/bitnet-b1.58-2B-4T (packed uint8), its -bf16 master weights, 1bitLLM/bitnet_b1_58.`,
    );
  }
  // The 2B-4T layouts are read by transformers' BitNetConfig, 1bitLLM's by LlamaConfig: their
  // defaults differ (rope_theta 500000 vs 10000, rms_norm_eps 1e-5 vs 1e-6, relu2 vs silu, …).
  let resolved: ResolvedConfig;
  try {
    resolved = resolveConfig(config, layout === "1bitllm" ? "LlamaConfig" : "BitNetConfig");
  } catch (error) {
    weights.close();
    throw error;
  }
  const notes: string[] = [];
  if (resolved.defaulted.length > 0) {
    notes.push(
      `config.json leaves keys out; used ${resolved.configClass}'s defaults for them, as transformers does: ${resolved.defaulted.join(", ")}.`,
    );
  }
  // tie_word_embeddings (default false in both classes) decides, as in transformers: when true
  // the head is the embedding even if the checkpoint also saved an lm_head.weight (transformers
  // ties it over whatever was saved), and no output.weight is written, as llama.cpp does for tied
  // models. When false, an lm_head identical to the embedding is still written once.
  let tied: boolean;
  if (resolved.tieWordEmbeddings) {
    tied = true;
    if (
      has("lm_head.weight") &&
      !sameBytes(weights, "lm_head.weight", "model.embed_tokens.weight")
    ) {
      notes.push(
        "config.json sets tie_word_embeddings: the checkpoint's lm_head.weight is ignored and the head is the token embedding, as transformers ties it.",
      );
    }
  } else if (has("lm_head.weight")) {
    tied = sameBytes(weights, "lm_head.weight", "model.embed_tokens.weight");
  } else {
    tied = true;
    notes.push(
      "tie_word_embeddings is false but the checkpoint has no lm_head.weight: the head is the token embedding (as llama.cpp loads a file without output.weight); transformers would initialize a random head.",
    );
  }
  return {
    dir,
    config,
    resolved,
    layout,
    weights,
    nLayer: config.num_hidden_layers,
    nEmbd: config.hidden_size,
    nFf: config.intermediate_size,
    nHead: config.num_attention_heads,
    nHeadKv: resolved.nHeadKv,
    tied,
    notes,
  };
}

/** A float tensor (BF16, F16 or F32) as f32 values, shape-checked. */
export function readFloat(ck: Checkpoint, name: string, shape: readonly number[]): Float32Array {
  const t = tensor(ck, name);
  expectShape(t, shape, "the config");
  const bytes = ck.weights.read(name);
  const n = t.elementCount;
  switch (t.dtype) {
    case "BF16":
      return decodeBf16(bytes, new Float32Array(n));
    case "F16":
      return decodeF16(bytes, new Float32Array(n));
    case "F32":
      return decodeF32(bytes, new Float32Array(n));
    default:
      throw new ConvertError(
        ConvertErrorCode.BAD_TENSOR,
        `could not convert - tensor "${name}" is ${t.dtype}; expected BF16, F16 or F32.`,
      );
  }
}

export function projectionShape(ck: Checkpoint, p: Projection): [number, number] {
  const d = ck.nEmbd;
  const kv = (d / ck.nHead) * ck.nHeadKv;
  switch (p) {
    case "q_proj":
    case "o_proj":
      return [d, d];
    case "k_proj":
    case "v_proj":
      return [kv, d];
    case "gate_proj":
    case "up_proj":
      return [ck.nFf, d];
    case "down_proj":
      return [d, ck.nFf];
  }
}

/**
 * absmean ternarization (spec §5.4): s = 1 / max(mean|W|, 1e-5) in f32, W_t = clamp(round(W·s),
 * −1, 1) with ties to even (torch.round); the tensor scale is 1/s (= mean|W|).
 */
export function absmean(w: Float32Array): { values: Int8Array; scale: number } {
  let sum = 0;
  for (const x of w) {
    sum += Math.abs(x);
  }
  const s = Math.fround(1 / Math.max(Math.fround(sum / w.length), 1e-5));
  const values = new Int8Array(w.length);
  for (let i = 0; i < w.length; i++) {
    const x = Math.fround(w[i]! * s);
    let r = Math.round(x);
    if (Math.abs(x % 1) === 0.5 && r % 2 !== 0) {
      r -= 1;
    }
    values[i] = Math.max(-1, Math.min(1, r));
  }
  return { values, scale: Math.fround(1 / s) };
}

/** A packed projection (U8, four ternary rows per byte), checked before any byte is read. */
function packedTensor(
  ck: Checkpoint,
  name: string,
  rows: number,
  cols: number,
): SafetensorsTensorInfo {
  const t = tensor(ck, name);
  if (t.dtype !== "U8") {
    throw new ConvertError(
      ConvertErrorCode.BAD_TENSOR,
      `could not convert - packed tensor "${name}" is ${t.dtype}; expected U8.`,
    );
  }
  expectShape(t, [rows / 4, cols], "four ternary rows per byte");
  return t;
}

/** One projection as ternary values and a per-tensor scale, whatever the layout. */
export function readTernary(ck: Checkpoint, layer: number, p: Projection): TernaryTensor {
  const [rows, cols] = projectionShape(ck, p);
  const name = `${projectionName(layer, p)}.weight`;
  if (ck.layout === "packed") {
    packedTensor(ck, name, rows, cols);
    const scaleName = `${projectionName(layer, p)}.weight_scale`;
    const st = tensor(ck, scaleName);
    if (st.elementCount !== 1) {
      throw new ConvertError(
        ConvertErrorCode.BAD_TENSOR,
        `could not convert - "${scaleName}" has ${st.elementCount} values; expected 1.`,
      );
    }
    const sb = ck.weights.read(scaleName);
    const view = new DataView(sb.buffer, sb.byteOffset, sb.byteLength);
    const scale =
      st.dtype === "BF16"
        ? bf16ToF32(view.getUint16(0, true))
        : st.dtype === "F16"
          ? f16ToF32(view.getUint16(0, true))
          : st.dtype === "F32"
            ? view.getFloat32(0, true)
            : Number.NaN;
    if (!Number.isFinite(scale)) {
      throw new ConvertError(
        ConvertErrorCode.BAD_TENSOR,
        `could not convert - "${scaleName}" is ${st.dtype} or not finite.`,
      );
    }
    // Four row slabs: unpacked row slab·R + r comes from bits 2·slab of packed row r (spec §3).
    const packed = ck.weights.read(name);
    const R = rows / 4;
    const values = new Int8Array(rows * cols);
    for (let slab = 0; slab < 4; slab++) {
      for (let r = 0; r < R; r++) {
        const src = r * cols;
        const dst = (slab * R + r) * cols;
        for (let c = 0; c < cols; c++) {
          const code = (packed[src + c]! >> (2 * slab)) & 3;
          values[dst + c] = code === 3 ? 0 : code - 1; // 3 is unused; mainline maps it to 0
        }
      }
    }
    return { values, scale, rows, cols };
  }
  return { ...absmean(readFloat(ck, name, [rows, cols])), rows, cols };
}

/** Checks every tensor a conversion will read (presence, dtype, shape) before anything is written. */
export function checkTensors(ck: Checkpoint, vocabSize: number): void {
  const d = ck.nEmbd;
  const float = (name: string, shape: readonly number[]): void => {
    const t = tensor(ck, name);
    if (!["BF16", "F16", "F32"].includes(t.dtype)) {
      throw new ConvertError(
        ConvertErrorCode.BAD_TENSOR,
        `could not convert - tensor "${name}" is ${t.dtype}; expected BF16, F16 or F32.`,
      );
    }
    expectShape(t, shape, "the config");
  };
  float("model.embed_tokens.weight", [vocabSize, d]);
  float("model.norm.weight", [d]);
  if (!ck.tied) {
    float("lm_head.weight", [vocabSize, d]);
  }
  for (let il = 0; il < ck.nLayer; il++) {
    const p = `model.layers.${il}`;
    const sub = subNormNames(ck.layout, il);
    float(`${p}.input_layernorm.weight`, [d]);
    float(`${p}.post_attention_layernorm.weight`, [d]);
    float(sub.attn, [d]);
    float(sub.ffn, [ck.nFf]);
    for (const pr of PROJECTIONS) {
      const [rows, cols] = projectionShape(ck, pr);
      const name = `${projectionName(il, pr)}.weight`;
      if (ck.layout === "packed") {
        packedTensor(ck, name, rows, cols);
        tensor(ck, `${projectionName(il, pr)}.weight_scale`);
      } else {
        float(name, [rows, cols]);
      }
    }
  }
}
