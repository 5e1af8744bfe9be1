/**
 * Weights in the form the reference kernels read: ternary projections unpacked to int8 values
 * with one scale per (row, block); float weights dequantized to f32. Unpacking happens once, at
 * compile time.
 */

import type { GgufTensorInfo } from "@bitnet-ts/gguf";
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
import { EngineError, EngineErrorCode } from "../errors";
import type { BoundTensor } from "../model";

export type ActivationQuant = "per-token-int8" | "q8_k" | "none";

/** A matrix of `rows` outputs × `cols` inputs. */
export interface LinearWeight {
  readonly name: string;
  readonly rows: number;
  readonly cols: number;
  readonly kind: "ternary" | "float";
  /** Ternary values −1/0/+1, row-major (kind "ternary"). */
  readonly values: Int8Array | undefined;
  /** Scale of each block of `blockSize` columns in each row (kind "ternary"). */
  readonly scales: Float32Array | undefined;
  readonly blockSize: number;
  /** How activations are quantized before the dot products. */
  readonly activationQuant: ActivationQuant;
  /** f32 weights, row-major (kind "float"). */
  readonly floats: Float32Array | undefined;
  /** True when ggml would round the activation to f16 first (F16 weights). */
  readonly f16Activations: boolean;
  /** The ggml type name, for kernel ids. */
  readonly typeName: string;
}

/**
 * The values of a float-typed tensor (F32, F16, BF16, Q8_0, Q6_K, Q4_0) as f32, from its bytes:
 * the dequantization every backend that keeps such weights as floats uses, so they all compute on
 * the same values.
 */
export function decodeFloats(info: GgufTensorInfo, bytes: Uint8Array): Float32Array {
  const n = info.elementCount;
  switch (info.type.name) {
    case "F32":
      return decodeF32(bytes, new Float32Array(n));
    case "F16":
      return decodeF16(bytes, new Float32Array(n));
    case "BF16":
      return decodeBf16(bytes, new Float32Array(n));
    case "Q8_0":
      return dequantizeQ8_0(bytes, n);
    case "Q6_K":
      return dequantizeQ6_K(bytes, n);
    case "Q4_0":
      return dequantizeQ4_0(bytes, n);
    default:
      throw new EngineError(
        EngineErrorCode.BAD_TENSOR_TYPE,
        `could not use tensor "${info.name}" - ${info.type.name} cannot be read as floats.`,
      );
  }
}

export function floatValues(t: BoundTensor): Float32Array {
  return decodeFloats(t.info, t.data);
}

export function linearWeight(t: BoundTensor): LinearWeight {
  const cols = t.info.shape[0]!;
  const rows = t.info.elementCount / cols;
  const n = t.info.elementCount;
  const base = { name: t.info.name, rows, cols, typeName: t.info.type.name };
  switch (t.info.type.name) {
    case "I2_S": {
      const { values, scale } = unpackI2S(t.data, n);
      return {
        ...base,
        kind: "ternary",
        values,
        scales: new Float32Array(rows).fill(scale),
        blockSize: cols,
        activationQuant: "per-token-int8",
        floats: undefined,
        f16Activations: false,
      };
    }
    case "TQ2_0":
    case "TQ1_0": {
      const { values, scales } =
        t.info.type.name === "TQ2_0" ? unpackTQ2_0(t.data, n) : unpackTQ1_0(t.data, n);
      return {
        ...base,
        kind: "ternary",
        values,
        scales,
        blockSize: 256,
        activationQuant: "q8_k",
        floats: undefined,
        f16Activations: false,
      };
    }
    default:
      return {
        ...base,
        kind: "float",
        values: undefined,
        scales: undefined,
        blockSize: cols,
        activationQuant: "none",
        floats: floatValues(t),
        f16Activations: t.info.type.name === "F16",
      };
  }
}
