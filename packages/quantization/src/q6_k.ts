/**
 * Q6_K (type 14): super-blocks of 256 elements in 210 bytes: ql[128] low 4 bits, qh[64] high
 * 2 bits, int8 scales[16] (one per 16 elements), then the f16 super-block scale d (last).
 */
import { checkBlocks, checkBytes } from "./errors";
import { f16ToF32 } from "./float";

export const Q6_K_BLOCK = 256;
export const Q6_K_BYTES = 210;

/** ggml `dequantize_row_q6_K`. */
export function dequantizeQ6_K(
  bytes: Uint8Array,
  n: number,
  out: Float32Array = new Float32Array(n),
): Float32Array {
  checkBlocks("Q6_K", n, Q6_K_BLOCK);
  checkBytes("Q6_K", bytes, (n / Q6_K_BLOCK) * Q6_K_BYTES);
  const signed = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let b = 0; b < n / Q6_K_BLOCK; b++) {
    const base = b * Q6_K_BYTES;
    const d = f16ToF32(bytes[base + 208] | (bytes[base + 209] << 8));
    for (let half = 0; half < 2; half++) {
      const ql = base + 64 * half;
      const qh = base + 128 + 32 * half;
      const sc = base + 192 + 8 * half;
      const y = b * Q6_K_BLOCK + 128 * half;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = bytes[qh + l];
        const q1 = ((bytes[ql + l] & 0xf) | ((h & 3) << 4)) - 32;
        const q2 = ((bytes[ql + l + 32] & 0xf) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((bytes[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((bytes[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
        out[y + l] = Math.fround(Math.fround(d * signed[sc + is]) * q1);
        out[y + l + 32] = Math.fround(Math.fround(d * signed[sc + is + 2]) * q2);
        out[y + l + 64] = Math.fround(Math.fround(d * signed[sc + is + 4]) * q3);
        out[y + l + 96] = Math.fround(Math.fround(d * signed[sc + is + 6]) * q4);
      }
    }
  }
  return out;
}
