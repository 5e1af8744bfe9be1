/**
 * Q6_K (type 14): super-blocks of 256 elements in 210 bytes: ql[128] low 4 bits, qh[64] high
 * 2 bits, int8 scales[16] (one per 16 elements), then the f16 super-block scale d (last).
 */
import { checkBlocks, checkBytes } from "./errors";
import { f16ToF32, f32ToF16, nearestInt } from "./float";
import type { Q8KBlocks } from "./q8_k";

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

const fround = Math.fround;
/** ggml GROUP_MAX_EPS: sub-blocks with a smaller magnitude quantize to zero. */
const GROUP_MAX_EPS = 1e-15;

/**
 * ggml `make_qx_quants(16, nmax, x, L, rmse_type = 1, NULL)`: a symmetric scale for one
 * sub-block, refined over 18 trial scales to minimize the x²-weighted squared error. f32
 * arithmetic at every step (products and sums rounded as ggml's C, without FMA contraction).
 */
function makeQxQuants(x: Float32Array, off: number, n: number, nmax: number, L: Int8Array): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[off + i]!);
    if (ax > amax) {
      amax = ax;
      max = x[off + i]!;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, off, off + n);
    return 0;
  }
  const clamp = (l: number) => Math.max(-nmax, Math.min(nmax - 1, l));
  let iscale = fround(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[off + i]!;
    const l = clamp(nearestInt(fround(iscale * xi)));
    L[off + i] = l + nmax;
    const w = fround(xi * xi);
    sumlx = fround(sumlx + fround(fround(w * xi) * l));
    suml2 = fround(suml2 + fround(fround(w * l) * l));
  }
  let scale = suml2 !== 0 ? fround(sumlx / suml2) : 0;
  let best = fround(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) {
      continue;
    }
    iscale = fround(-fround(nmax + fround(0.1 * is)) / max);
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[off + i]!;
      const l = clamp(nearestInt(fround(iscale * xi)));
      const w = fround(xi * xi);
      sumlx = fround(sumlx + fround(fround(w * xi) * l));
      suml2 = fround(suml2 + fround(fround(w * l) * l));
    }
    if (suml2 > 0 && fround(sumlx * sumlx) > fround(best * suml2)) {
      for (let i = 0; i < n; i++) {
        L[off + i] = nmax + clamp(nearestInt(fround(iscale * x[off + i]!)));
      }
      scale = fround(sumlx / suml2);
      best = fround(scale * sumlx);
    }
  }
  return scale;
}

/** ggml `quantize_row_q6_K_ref`: 6-bit quants with an int8 scale per 16 elements (f32 arithmetic). */
export function quantizeQ6_K(values: Float32Array): Uint8Array {
  checkBlocks("Q6_K", values.length, Q6_K_BLOCK);
  const x = Float32Array.from(values);
  const nb = values.length / Q6_K_BLOCK;
  const out = new Uint8Array(nb * Q6_K_BYTES);
  const L = new Int8Array(Q6_K_BLOCK);
  const scales = new Float32Array(16);
  for (let b = 0; b < nb; b++) {
    const xb = x.subarray(b * Q6_K_BLOCK, (b + 1) * Q6_K_BLOCK);
    const y = out.subarray(b * Q6_K_BYTES, (b + 1) * Q6_K_BYTES);
    let maxScale = 0;
    let maxAbsScale = 0;
    for (let ib = 0; ib < 16; ib++) {
      const scale = makeQxQuants(xb, 16 * ib, 16, 32, L);
      scales[ib] = scale;
      if (Math.abs(scale) > maxAbsScale) {
        maxAbsScale = Math.abs(scale);
        maxScale = scale;
      }
    }
    if (maxAbsScale < GROUP_MAX_EPS) {
      continue; // an all-zero block (d = 0)
    }
    const iscale = fround(-128 / maxScale);
    const dBits = f32ToF16(fround(1 / iscale));
    y[208] = dBits & 0xff;
    y[209] = dBits >> 8;
    const sc = new Int8Array(y.buffer, y.byteOffset + 192, 16);
    for (let ib = 0; ib < 16; ib++) {
      sc[ib] = Math.min(127, nearestInt(fround(iscale * scales[ib]!)));
    }
    const d0 = f16ToF32(dBits);
    for (let j = 0; j < 16; j++) {
      const d = fround(d0 * sc[j]!);
      if (d === 0) {
        continue;
      }
      for (let ii = 0; ii < 16; ii++) {
        const l = Math.max(-32, Math.min(31, nearestInt(fround(xb[16 * j + ii]! / d))));
        L[16 * j + ii] = l + 32;
      }
    }
    for (let j = 0; j < Q6_K_BLOCK; j += 128) {
      const ql = 64 * (j / 128);
      const qh = 128 + 32 * (j / 128);
      for (let l = 0; l < 32; l++) {
        const q1 = L[j + l]!;
        const q2 = L[j + l + 32]!;
        const q3 = L[j + l + 64]!;
        const q4 = L[j + l + 96]!;
        y[ql + l] = (q1 & 0xf) | ((q3 & 0xf) << 4);
        y[ql + l + 32] = (q2 & 0xf) | ((q4 & 0xf) << 4);
        y[qh + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
      }
    }
  }
  return out;
}

/**
 * One Q6_K row · Q8_K activations, in the order the CPU backend's quantized head computes it: per
 * block the exact integer isum = Σ_i scale_i · Σ (q6 − 32)·q8 over sub-block i's 16 values, then
 * sum = f32(sum + f32(f32(isum) · f32(d_w · d_a))), block by block (the reference for every
 * kernel path, which must match it bit for bit). `row` holds n / 256 blocks, `x` n values.
 */
export function dotQ6_KQ8_K(row: Uint8Array, x: Q8KBlocks): number {
  const n = x.qs.length;
  checkBlocks("Q6_K", n, Q6_K_BLOCK);
  checkBytes("Q6_K", row, (n / Q6_K_BLOCK) * Q6_K_BYTES);
  const signed = new Int8Array(row.buffer, row.byteOffset, row.byteLength);
  const sub = new Int32Array(16);
  let sum = 0;
  for (let b = 0; b < n / Q6_K_BLOCK; b++) {
    const base = b * Q6_K_BYTES;
    sub.fill(0);
    for (let half = 0; half < 2; half++) {
      const ql = base + 64 * half;
      const qh = base + 128 + 32 * half;
      const q = b * Q6_K_BLOCK + 128 * half;
      for (let l = 0; l < 32; l++) {
        const s = 8 * half + (l >> 4);
        const h = row[qh + l]!;
        sub[s] += (((row[ql + l]! & 0xf) | ((h & 3) << 4)) - 32) * x.qs[q + l]!;
        sub[s + 2] +=
          (((row[ql + l + 32]! & 0xf) | (((h >> 2) & 3) << 4)) - 32) * x.qs[q + l + 32]!;
        sub[s + 4] += (((row[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32) * x.qs[q + l + 64]!;
        sub[s + 6] += (((row[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32) * x.qs[q + l + 96]!;
      }
    }
    let isum = 0;
    for (let i = 0; i < 16; i++) {
      isum += signed[base + 192 + i]! * sub[i]!;
    }
    const dw = f16ToF32(row[base + 208]! | (row[base + 209]! << 8));
    sum = fround(sum + fround(fround(isum) * fround(dw * x.d[b]!)));
  }
  return sum;
}
