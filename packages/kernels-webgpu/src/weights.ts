/**
 * Weights in the layouts the WGSL kernels read, built once on the host at compile time.
 *
 * - Ternary (I2_S, TQ2_0, TQ1_0): 2-bit codes (value + 1), 16 per u32 word, column 16w + 4k + b
 *   of a row at bits 8b + 2k of word w. Four shifts and one mask give four int8 lanes for
 *   `dot4I8Packed`, so a word costs four packed dots and nothing else. TQ1_0 is repacked the
 *   same way (lossless: the values are the same −1/0/+1). Scales: one per row (I2_S's tensor
 *   scale) or one per row and 256 block (TQ types' f16 block scales, as f32).
 * - Float (the head, float projections): F16 stays F16 (pairs in u32); every other float type
 *   (F32, BF16, Q8_0, Q6_K, Q4_0) is dequantized to f32 with the reference's own dequantizers,
 *   so the head computes on exactly the values the reference does.
 */
import type { BoundTensor } from "@bitnet-ts/engine-core";
import { EngineError, EngineErrorCode } from "@bitnet-ts/engine-core";
import {
  decodeBf16,
  decodeF16,
  decodeF32,
  dequantizeQ4_0,
  dequantizeQ6_K,
  dequantizeQ8_0,
  unpackI2S,
  unpackTQ1_0,
  unpackTQ2_0,
} from "@bitnet-ts/quantization";
import type { QuantMode } from "./wgsl";

export interface TernaryWeights {
  readonly rows: number;
  readonly cols: number;
  /** rows × cols/16 words. */
  readonly words: Uint32Array;
  /** rows (per-token-int8) or rows × cols/256 (q8_k) scales. */
  readonly scales: Float32Array;
  readonly quant: QuantMode;
  /** The kernel id's type tag ("i2_s", "tq2_0", "tq1_0_as_tq2_0"). */
  readonly tag: string;
}

export const TERNARY_TYPES: ReadonlySet<string> = new Set(["I2_S", "TQ2_0", "TQ1_0"]);

/** Packs int8 ternary values (row-major) into the kernels' 2-bit layout. */
export function packTernaryCodes(values: Int8Array, rows: number, cols: number): Uint32Array {
  const wordsPerRow = cols / 16;
  const words = new Uint32Array(rows * wordsPerRow);
  for (let r = 0; r < rows; r++) {
    const rowBase = r * cols;
    const wordBase = r * wordsPerRow;
    for (let w = 0; w < wordsPerRow; w++) {
      const c0 = rowBase + 16 * w;
      let word = 0;
      for (let k = 0; k < 4; k++) {
        for (let b = 0; b < 4; b++) {
          word |= (values[c0 + 4 * k + b]! + 1) << (8 * b + 2 * k);
        }
      }
      words[wordBase + w] = word >>> 0;
    }
  }
  return words;
}

export function ternaryWeights(t: BoundTensor): TernaryWeights {
  const cols = t.info.shape[0]!;
  const n = t.info.elementCount;
  const rows = n / cols;
  if (cols % 256 !== 0) {
    throw new EngineError(
      EngineErrorCode.BAD_TENSOR_SHAPE,
      `could not upload tensor "${t.info.name}" - the WebGPU kernels need rows of a multiple of 256 values, it has ${cols}.`,
    );
  }
  switch (t.info.type.name) {
    case "I2_S": {
      const { values, scale } = unpackI2S(t.data, n);
      return {
        rows,
        cols,
        words: packTernaryCodes(values, rows, cols),
        scales: new Float32Array(rows).fill(scale),
        quant: "per-token-int8",
        tag: "i2_s",
      };
    }
    case "TQ2_0":
    case "TQ1_0": {
      const tq2 = t.info.type.name === "TQ2_0";
      const { values, scales } = tq2 ? unpackTQ2_0(t.data, n) : unpackTQ1_0(t.data, n);
      return {
        rows,
        cols,
        words: packTernaryCodes(values, rows, cols),
        scales,
        quant: "q8_k",
        tag: tq2 ? "tq2_0" : "tq1_0_as_tq2_0",
      };
    }
    default:
      throw new EngineError(
        EngineErrorCode.BAD_TENSOR_TYPE,
        `could not upload tensor "${t.info.name}" - ${t.info.type.name} is not a ternary type.`,
      );
  }
}

/** Dequantizes `count` values of a float-typed tensor's bytes (F16 excluded: kept as is). */
function floatsOf(type: string, bytes: Uint8Array, count: number, name: string): Float32Array {
  switch (type) {
    case "F32":
      return decodeF32(bytes, new Float32Array(count));
    case "F16":
      return decodeF16(bytes, new Float32Array(count));
    case "BF16":
      return decodeBf16(bytes, new Float32Array(count));
    case "Q8_0":
      return dequantizeQ8_0(bytes, count);
    case "Q6_K":
      return dequantizeQ6_K(bytes, count);
    case "Q4_0":
      return dequantizeQ4_0(bytes, count);
    default:
      throw new EngineError(
        EngineErrorCode.BAD_TENSOR_TYPE,
        `could not use tensor "${name}" - the WebGPU backend cannot read ${type} as floats.`,
      );
  }
}

export interface FloatWeights {
  readonly rows: number;
  readonly cols: number;
  readonly layout: "f16" | "f32";
  /** The bytes to upload, row-major (f16 or f32 values). */
  readonly bytes: Uint8Array;
  /** Bytes per row. */
  readonly rowBytes: number;
  /** ggml rounds the activation to f16 before an F16 matmul. */
  readonly f16Activations: boolean;
  readonly tag: string;
}

export function floatWeights(t: BoundTensor): FloatWeights {
  const cols = t.info.shape[0]!;
  const rows = t.info.elementCount / cols;
  const type = t.info.type.name;
  if (cols % 2 !== 0) {
    throw new EngineError(
      EngineErrorCode.BAD_TENSOR_SHAPE,
      `could not upload tensor "${t.info.name}" - rows of an odd width (${cols}) are not supported.`,
    );
  }
  if (type === "F16") {
    return {
      rows,
      cols,
      layout: "f16",
      bytes: t.data,
      rowBytes: cols * 2,
      f16Activations: true,
      tag: "f16",
    };
  }
  const floats = floatsOf(type, t.data, t.info.elementCount, t.info.name);
  return {
    rows,
    cols,
    layout: "f32",
    bytes: new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength),
    rowBytes: cols * 4,
    f16Activations: false,
    tag: type.toLowerCase(),
  };
}

/**
 * Embedding rows on the host: the step's token rows are dequantized here and uploaded with the
 * step's inputs (a few KiB per token), so the table never needs a GPU copy of its own unless it
 * is also the head.
 */
export class EmbeddingRows {
  readonly #tensor: BoundTensor;
  readonly #cols: number;
  readonly #rowBytes: number;

  constructor(tensor: BoundTensor) {
    this.#tensor = tensor;
    this.#cols = tensor.info.shape[0]!;
    this.#rowBytes = tensor.info.byteSize / (tensor.info.elementCount / this.#cols);
  }

  get tag(): string {
    return this.#tensor.info.type.name.toLowerCase();
  }

  /** Writes the rows of `tokens` into out (tokens × cols). */
  rows(tokens: Int32Array, out: Float32Array): void {
    const data = this.#tensor.data;
    const type = this.#tensor.info.type.name;
    for (let t = 0; t < tokens.length; t++) {
      const start = tokens[t]! * this.#rowBytes;
      const row = floatsOf(
        type,
        data.subarray(start, start + this.#rowBytes),
        this.#cols,
        this.#tensor.info.name,
      );
      out.set(row, t * this.#cols);
    }
  }
}
