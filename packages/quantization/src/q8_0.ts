/** Q8_0 (type 8): blocks of 32 int8 values with an f16 scale: element = qs[j] × d. */
import { checkBlocks, checkBytes } from "./errors";
import { f16ToF32, f32ToF16, roundHalfAwayFromZero } from "./float";

export const Q8_0_BLOCK = 32;
export const Q8_0_BYTES = 34;

/** ggml `quantize_row_q8_0_ref`: d = max|x| / 127, q = roundf(x / d). */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  checkBlocks("Q8_0", x.length, Q8_0_BLOCK);
  const nb = x.length / Q8_0_BLOCK;
  const out = new Uint8Array(nb * Q8_0_BYTES);
  for (let b = 0; b < nb; b++) {
    const o = b * Q8_0_BLOCK;
    const y = b * Q8_0_BYTES;
    let amax = 0;
    for (let j = 0; j < Q8_0_BLOCK; j++) {
      amax = Math.max(amax, Math.abs(x[o + j]));
    }
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    const h = f32ToF16(d);
    out[y] = h & 0xff;
    out[y + 1] = h >> 8;
    for (let j = 0; j < Q8_0_BLOCK; j++) {
      out[y + 2 + j] = roundHalfAwayFromZero(Math.fround(x[o + j] * id)) & 0xff;
    }
  }
  return out;
}

/** ggml `dequantize_row_q8_0`. */
export function dequantizeQ8_0(
  bytes: Uint8Array,
  n: number,
  out: Float32Array = new Float32Array(n),
): Float32Array {
  checkBlocks("Q8_0", n, Q8_0_BLOCK);
  checkBytes("Q8_0", bytes, (n / Q8_0_BLOCK) * Q8_0_BYTES);
  const qs = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let b = 0; b < n / Q8_0_BLOCK; b++) {
    const y = b * Q8_0_BYTES;
    const d = f16ToF32(bytes[y] | (bytes[y + 1] << 8));
    for (let j = 0; j < Q8_0_BLOCK; j++) {
      out[b * Q8_0_BLOCK + j] = Math.fround(qs[y + 2 + j] * d);
    }
  }
  return out;
}
