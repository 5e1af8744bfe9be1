/**
 * One row per storage format, like ggml's `type_traits[]`: block size, bytes per block and the
 * scalar reference conversions. Kernel packages test themselves against these rows.
 */
import { decodeBf16, decodeF16, decodeF32, encodeBf16, encodeF16, encodeF32 } from "./float";
import { dequantizeI2S, I2S_BLOCK, quantizeI2S } from "./i2s";
import { dequantizeQ4_0, Q4_0_BLOCK, Q4_0_BYTES, quantizeQ4_0 } from "./q4_0";
import { dequantizeQ6_K, Q6_K_BLOCK, Q6_K_BYTES } from "./q6_k";
import { dequantizeQ8_0, Q8_0_BLOCK, Q8_0_BYTES, quantizeQ8_0 } from "./q8_0";
import { dequantizeQ8_K, encodeQ8_K, Q8_K_BLOCK, Q8_K_BYTES, quantizeQ8_K } from "./q8_k";
import { dequantizeTQ1_0, quantizeTQ1_0, TQ1_0_BLOCK, TQ1_0_BYTES } from "./tq1_0";
import { dequantizeTQ2_0, quantizeTQ2_0, TQ2_0_BLOCK, TQ2_0_BYTES } from "./tq2_0";

export type QuantType =
  | "F32"
  | "F16"
  | "BF16"
  | "Q4_0"
  | "Q8_0"
  | "Q6_K"
  | "Q8_K"
  | "TQ1_0"
  | "TQ2_0"
  | "I2_S";

export interface QuantTraits {
  readonly name: QuantType;
  /** Elements per block (a tensor row must be a multiple of it). */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly typeSize: number;
  /** Extra bytes per tensor (I2_S's scale tail). */
  readonly tensorTailBytes: number;
  /** Dequantizes `n` elements (a whole tensor for I2_S, whose scale is per tensor). */
  readonly toFloat: (bytes: Uint8Array, n: number) => Float32Array;
  /** Reference quantizer (absent for Q6_K, which we only read). */
  readonly fromFloat?: (values: Float32Array) => Uint8Array;
}

const plain = (
  name: QuantType,
  typeSize: number,
  decode: (b: Uint8Array) => Float32Array,
  encode: (v: Float32Array) => Uint8Array,
): QuantTraits => ({
  name,
  blockSize: 1,
  typeSize,
  tensorTailBytes: 0,
  toFloat: (bytes, n) => decode(bytes.subarray(0, n * typeSize)),
  fromFloat: encode,
});

/** The trait table. */
export const QUANT_TRAITS: Readonly<Record<QuantType, QuantTraits>> = Object.freeze({
  F32: plain("F32", 4, (b) => decodeF32(b), encodeF32),
  F16: plain("F16", 2, (b) => decodeF16(b), encodeF16),
  BF16: plain("BF16", 2, (b) => decodeBf16(b), encodeBf16),
  Q4_0: {
    name: "Q4_0",
    blockSize: Q4_0_BLOCK,
    typeSize: Q4_0_BYTES,
    tensorTailBytes: 0,
    toFloat: (b, n) => dequantizeQ4_0(b, n),
    fromFloat: quantizeQ4_0,
  },
  Q8_0: {
    name: "Q8_0",
    blockSize: Q8_0_BLOCK,
    typeSize: Q8_0_BYTES,
    tensorTailBytes: 0,
    toFloat: (b, n) => dequantizeQ8_0(b, n),
    fromFloat: quantizeQ8_0,
  },
  Q6_K: {
    name: "Q6_K",
    blockSize: Q6_K_BLOCK,
    typeSize: Q6_K_BYTES,
    tensorTailBytes: 0,
    toFloat: (b, n) => dequantizeQ6_K(b, n),
  },
  Q8_K: {
    name: "Q8_K",
    blockSize: Q8_K_BLOCK,
    typeSize: Q8_K_BYTES,
    tensorTailBytes: 0,
    toFloat: (b, n) => dequantizeQ8_K(b, n),
    fromFloat: (v) => encodeQ8_K(quantizeQ8_K(v)),
  },
  TQ1_0: {
    name: "TQ1_0",
    blockSize: TQ1_0_BLOCK,
    typeSize: TQ1_0_BYTES,
    tensorTailBytes: 0,
    toFloat: (b, n) => dequantizeTQ1_0(b, n),
    fromFloat: quantizeTQ1_0,
  },
  TQ2_0: {
    name: "TQ2_0",
    blockSize: TQ2_0_BLOCK,
    typeSize: TQ2_0_BYTES,
    tensorTailBytes: 0,
    toFloat: (b, n) => dequantizeTQ2_0(b, n),
    fromFloat: quantizeTQ2_0,
  },
  I2_S: {
    name: "I2_S",
    blockSize: I2S_BLOCK,
    typeSize: 32,
    tensorTailBytes: 32,
    toFloat: (b, n) => dequantizeI2S(b, n),
    fromFloat: quantizeI2S,
  },
});

/** Bytes a tensor of `n` elements of `type` occupies. */
export function quantByteSize(type: QuantType, n: number): number {
  const t = QUANT_TRAITS[type];
  return (n / t.blockSize) * t.typeSize + t.tensorTailBytes;
}
