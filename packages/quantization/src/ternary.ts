/**
 * The two quantizers BitLinear layers are built from: absmean ternarization of weights and
 * per-token absmax int8 quantization of activations (bitnet.cpp semantics).
 */
import { nearestInt, roundHalfToEven } from "./float";

/** Ternary weights and the scale that dequantizes them: weight ≈ value × scale. */
export interface TernaryWeights {
  readonly values: Int8Array;
  readonly scale: number;
}

/**
 * Absmean ternary quantization (BitNet b1.58, transformers' `WeightQuant`):
 * scale = max(mean|W|, 1e-5); value = clamp(round(W / scale), -1, 1) with ties to even.
 * The mean is accumulated in float64 and the scale rounded to f32 (the stored precision).
 */
export function absmeanTernary(weights: Float32Array): TernaryWeights {
  let sum = 0;
  for (let i = 0; i < weights.length; i++) {
    sum += Math.abs(weights[i]);
  }
  const mean = weights.length > 0 ? sum / weights.length : 0;
  const scale = Math.fround(Math.max(mean, 1e-5));
  const inv = 1 / scale;
  const values = new Int8Array(weights.length);
  for (let i = 0; i < weights.length; i++) {
    values[i] = Math.max(-1, Math.min(1, roundHalfToEven(weights[i] * inv)));
  }
  return { values, scale };
}

/** One token's int8 activations as bitnet.cpp's `quantize_row_i8_s` produces them. */
export interface Int8Activations {
  /** s_a = 127 / max(max|x|, 1e-5): quantized = round(x · s_a). Divide by it to dequantize. */
  readonly scale: number;
  /** Σ q, used to turn unsigned I2_S codes {0,1,2} into {-1,0,1} in the dot product. */
  readonly sum: number;
}

/**
 * Per-token absmax int8 quantization (bitnet.cpp `quantize_row_i8_s`): the max |x| is taken in
 * double with a floor of 1e-5, s_a = 127 / max rounded to f32, q = nearest_int(x · s_a) clamped
 * to [-128, 127]. Writes `x.length` values into `out` and returns s_a and Σq.
 */
export function quantizeActivationsI8(x: Float32Array, out: Int8Array): Int8Activations {
  let max = 0.00001;
  for (let i = 0; i < x.length; i++) {
    const a = Math.abs(x[i]);
    if (a > max) {
      max = a;
    }
  }
  const scale = Math.fround(127 / max);
  let sum = 0;
  for (let i = 0; i < x.length; i++) {
    const q = Math.max(-128, Math.min(127, nearestInt(Math.fround(x[i] * scale))));
    out[i] = q;
    sum += q;
  }
  return { scale, sum };
}
