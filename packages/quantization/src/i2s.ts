/**
 * I2_S: bitnet.cpp's 2-bit ternary format (ggml type 36), x86 "ACT_PARALLEL" layout, the layout
 * of the released microsoft/bitnet-b1.58-2B-4T GGUF.
 *
 * A tensor of N elements is N/4 bytes of codes followed by a 32-byte tail whose first 4 bytes
 * are the single f32 scale of the whole tensor. Codes: 0 → -1, 1 → 0, 2 → +1.
 * The flattened (row-major) elements are cut into 128-element blocks of 32 bytes; byte p of a
 * block holds elements p, p+32, p+64, p+96 in bits 7-6, 5-4, 3-2, 1-0.
 */
import { checkBlocks, checkBytes, QuantizationError } from "./errors";

export const I2S_BLOCK = 128;
/** Bytes after the codes: the f32 scale plus padding. */
export const I2S_TAIL_BYTES = 32;

/** Bytes an I2_S tensor of `n` elements occupies. */
export function i2sByteSize(n: number): number {
  checkBlocks("I2_S", n, I2S_BLOCK);
  return n / 4 + I2S_TAIL_BYTES;
}

/** Packs ternary values (-1, 0, +1) and the tensor scale into I2_S bytes. */
export function packI2S(values: Int8Array, scale: number): Uint8Array {
  const n = values.length;
  const out = new Uint8Array(i2sByteSize(n));
  for (let block = 0; block < n / I2S_BLOCK; block++) {
    const src = block * I2S_BLOCK;
    const dst = block * 32;
    for (let p = 0; p < 32; p++) {
      const a = values[src + p] + 1;
      const b = values[src + p + 32] + 1;
      const c = values[src + p + 64] + 1;
      const d = values[src + p + 96] + 1;
      if (a > 2 || b > 2 || c > 2 || d > 2 || (a | b | c | d) < 0) {
        throw new QuantizationError(
          `could not pack I2_S - values must be -1, 0 or +1.\nReceived a value out of range near element ${src + p}.`,
        );
      }
      out[dst + p] = (a << 6) | (b << 4) | (c << 2) | d;
    }
  }
  new DataView(out.buffer).setFloat32(n / 4, scale, true);
  return out;
}

/** The f32 scale stored in an I2_S tensor of `n` elements. */
export function i2sScale(bytes: Uint8Array, n: number): number {
  checkBytes("I2_S", bytes, i2sByteSize(n));
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getFloat32(n / 4, true);
}

/** Unpacks I2_S bytes into ternary values (-1, 0, +1) and the tensor scale. */
export function unpackI2S(bytes: Uint8Array, n: number): { values: Int8Array; scale: number } {
  const scale = i2sScale(bytes, n);
  const values = new Int8Array(n);
  for (let block = 0; block < n / I2S_BLOCK; block++) {
    const src = block * 32;
    const dst = block * I2S_BLOCK;
    for (let p = 0; p < 32; p++) {
      const byte = bytes[src + p];
      values[dst + p] = ((byte >> 6) & 3) - 1;
      values[dst + p + 32] = ((byte >> 4) & 3) - 1;
      values[dst + p + 64] = ((byte >> 2) & 3) - 1;
      values[dst + p + 96] = (byte & 3) - 1;
    }
  }
  return { values, scale };
}

/** Dequantizes I2_S: element = (code - 1) × scale. */
export function dequantizeI2S(
  bytes: Uint8Array,
  n: number,
  out: Float32Array = new Float32Array(n),
): Float32Array {
  const { values, scale } = unpackI2S(bytes, n);
  for (let i = 0; i < n; i++) {
    out[i] = Math.fround(values[i] * scale);
  }
  return out;
}

/**
 * Quantizes already-ternarized float weights (values in {-s, 0, +s}) as bitnet.cpp's
 * `quantize_i2_s` does: scale = max|w| over the tensor; |w| < 1e-6 → 0; w > 0 → +1; else -1.
 */
export function quantizeI2S(weights: Float32Array): Uint8Array {
  let scale = 0;
  for (let i = 0; i < weights.length; i++) {
    const a = Math.abs(weights[i]);
    if (a > scale) {
      scale = a;
    }
  }
  const values = new Int8Array(weights.length);
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i];
    values[i] = Math.abs(w) < 1e-6 ? 0 : w * scale > 0 ? 1 : -1;
  }
  return packI2S(values, Math.fround(scale));
}
