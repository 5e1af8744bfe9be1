/**
 * Q4_0 (type 2): blocks of 32 elements in 18 bytes: f16 d then 16 bytes of nibbles. The low
 * nibble of qs[j] is element j, the high nibble element j + 16; element = (nibble - 8) × d.
 */
import { checkBlocks, checkBytes } from "./errors";
import { f16ToF32, f32ToF16 } from "./float";

export const Q4_0_BLOCK = 32;
export const Q4_0_BYTES = 18;

/** ggml `quantize_row_q4_0_ref`: d = (signed value of max |x|) / -8, q = min(15, trunc(x/d + 8.5)). */
export function quantizeQ4_0(x: Float32Array): Uint8Array {
  checkBlocks("Q4_0", x.length, Q4_0_BLOCK);
  const nb = x.length / Q4_0_BLOCK;
  const out = new Uint8Array(nb * Q4_0_BYTES);
  for (let b = 0; b < nb; b++) {
    const o = b * Q4_0_BLOCK;
    const y = b * Q4_0_BYTES;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < Q4_0_BLOCK; j++) {
      const v = x[o + j];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = Math.fround(max / -8);
    const id = d ? Math.fround(1 / d) : 0;
    const h = f32ToF16(d);
    out[y] = h & 0xff;
    out[y + 1] = h >> 8;
    const q = (v: number): number =>
      Math.min(15, Math.trunc(Math.fround(Math.fround(v * id) + 8.5)));
    for (let j = 0; j < 16; j++) {
      out[y + 2 + j] = q(x[o + j]) | (q(x[o + j + 16]) << 4);
    }
  }
  return out;
}

/** ggml `dequantize_row_q4_0`. */
export function dequantizeQ4_0(
  bytes: Uint8Array,
  n: number,
  out: Float32Array = new Float32Array(n),
): Float32Array {
  checkBlocks("Q4_0", n, Q4_0_BLOCK);
  checkBytes("Q4_0", bytes, (n / Q4_0_BLOCK) * Q4_0_BYTES);
  for (let b = 0; b < n / Q4_0_BLOCK; b++) {
    const y = b * Q4_0_BYTES;
    const d = f16ToF32(bytes[y] | (bytes[y + 1] << 8));
    for (let j = 0; j < 16; j++) {
      const byte = bytes[y + 2 + j];
      out[b * Q4_0_BLOCK + j] = Math.fround(((byte & 0x0f) - 8) * d);
      out[b * Q4_0_BLOCK + j + 16] = Math.fround(((byte >> 4) - 8) * d);
    }
  }
  return out;
}
