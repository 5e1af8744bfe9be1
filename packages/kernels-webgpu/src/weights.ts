/**
 * Weights in the layouts the WGSL kernels read, built once on the host at compile time.
 *
 * - Ternary (I2_S, TQ2_0, TQ1_0): 2-bit codes (value + 1) in the file's own bit order, 16 per
 *   u32 word; four shifts and one mask give four int8 lanes of consecutive columns for
 *   `dot4I8Packed`, so a word costs four packed dots and nothing else. I2_S uploads straight from
 *   the file's bytes; TQ2_0 drops its block scales from between the codes; TQ1_0 is repacked as
 *   TQ2_0 codes (lossless: the values are the same −1/0/+1). Scales: one per row (I2_S's tensor
 *   scale) or one per row and 256 block (TQ types' f16 block scales, as f32).
 * - Float (the head, float projections): F16 stays F16 (pairs in u32); every other float type
 *   (F32, BF16, Q8_0, Q6_K, Q4_0) is dequantized to f32 with the reference's own dequantizers,
 *   so the head computes on exactly the values the reference does.
 */
import {
  type BoundTensor,
  decodeFloats,
  EngineError,
  EngineErrorCode,
} from "@bitnet-ts/engine-core";
import {
  f16ToF32,
  i2sScale,
  packTQ2Codes,
  TQ2_0_BLOCK,
  TQ2_0_BYTES,
  unpackTQ1_0,
} from "@bitnet-ts/quantization";
import type { QuantMode, TernaryCodes } from "./wgsl";

export interface TernaryWeights {
  readonly rows: number;
  readonly cols: number;
  /** rows × cols/16 words of 2-bit codes, in `codes` order. */
  readonly words: Uint8Array;
  readonly codes: TernaryCodes;
  /** rows (per-token-int8) or rows × cols/256 (q8_k) scales. */
  readonly scales: Float32Array;
  readonly quant: QuantMode;
  /** The kernel id's type tag ("i2_s", "tq2_0", "tq1_0_as_tq2_0"). */
  readonly tag: string;
}

export const TERNARY_TYPES: ReadonlySet<string> = new Set(["I2_S", "TQ2_0", "TQ1_0"]);

/**
 * I2_S: the file's code bytes as they are (no copy: the upload reads the file's bytes). TQ2_0:
 * the 64 code bytes of each 66-byte block, without the f16 scale (a copy per block, no per-value
 * work). TQ1_0: unpacked from base 3 and packed as TQ2_0 codes (lossless).
 */
export function ternaryWeights(t: BoundTensor, data: Uint8Array): TernaryWeights {
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
    case "I2_S":
      return {
        rows,
        cols,
        words: data.subarray(0, n / 4),
        codes: "i2_s",
        scales: new Float32Array(rows).fill(i2sScale(data, n)),
        quant: "per-token-int8",
        tag: "i2_s",
      };
    case "TQ2_0": {
      const nb = n / TQ2_0_BLOCK;
      const words = new Uint8Array(nb * 64);
      const scales = new Float32Array(nb);
      for (let b = 0; b < nb; b++) {
        const at = b * TQ2_0_BYTES;
        words.set(data.subarray(at, at + 64), 64 * b);
        scales[b] = f16ToF32(data[at + 64]! | (data[at + 65]! << 8));
      }
      return { rows, cols, words, codes: "tq2_0", scales, quant: "q8_k", tag: "tq2_0" };
    }
    case "TQ1_0": {
      const { values, scales } = unpackTQ1_0(data, n);
      return {
        rows,
        cols,
        words: packTQ2Codes(values),
        codes: "tq2_0",
        scales,
        quant: "q8_k",
        tag: "tq1_0_as_tq2_0",
      };
    }
    default:
      throw new EngineError(
        EngineErrorCode.BAD_TENSOR_TYPE,
        `could not upload tensor "${t.info.name}" - ${t.info.type.name} is not a ternary type.`,
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

export function floatWeights(t: BoundTensor, data: Uint8Array): FloatWeights {
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
      bytes: data,
      rowBytes: cols * 2,
      f16Activations: true,
      tag: "f16",
    };
  }
  const floats = decodeFloats(t.info, data);
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
