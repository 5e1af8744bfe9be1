/**
 * TQ1_0: mainline ggml's 1.6875-bit ternary format (type 34). Blocks of 256 elements in 54 bytes:
 * qs[48] hold 5 trits per byte, qh[4] hold 4 trits per byte, then an f16 scale d.
 * A byte stores a base-3 number q (first trit most significant) as ceil(q·256/243); trit n is
 * recovered as ((u8)(byte·3^n) · 3) >> 8.
 * Element order: qs[0..31] trit n → element 32n + m; qs[32..47] trit n → 160 + 16n + m;
 * qh[0..3] trit n → 240 + 4n + j.
 */
import { checkBlocks, checkBytes, QuantizationError } from "./errors";
import { f16ToF32, f32ToF16, roundHalfAwayFromZero } from "./float";

export const TQ1_0_BLOCK = 256;
export const TQ1_0_BYTES = 54;

const POW3 = [1, 3, 9, 27, 81, 243];

function trit(byte: number, n: number): number {
  return (((byte * POW3[n]) & 0xff) * 3) >> 8;
}

/** Stores a base-3 number (0..242) as ceil(q·256/243), spreading it over the byte range. */
function storeTrits(q: number): number {
  return ((q * 256 + 242) / 243) | 0;
}

/** Packs ternary values with one scale per 256-element block (or one scale for all). */
export function packTQ1_0(values: Int8Array, scales: Float32Array | number): Uint8Array {
  const n = values.length;
  checkBlocks("TQ1_0", n, TQ1_0_BLOCK);
  for (let i = 0; i < n; i++) {
    if (values[i] < -1 || values[i] > 1) {
      throw new QuantizationError(
        `could not pack TQ1_0 - values must be -1, 0 or +1 (element ${i}).`,
      );
    }
  }
  const nb = n / TQ1_0_BLOCK;
  const out = new Uint8Array(nb * TQ1_0_BYTES);
  for (let b = 0; b < nb; b++) {
    const x = b * TQ1_0_BLOCK;
    const y = b * TQ1_0_BYTES;
    // Codes are value + 1 (0, 1, 2); the first trit is the most significant.
    for (let m = 0; m < 32; m++) {
      let q = 0;
      for (let t = 0; t < 5; t++) {
        q = q * 3 + values[x + 32 * t + m] + 1;
      }
      out[y + m] = storeTrits(q);
    }
    for (let m = 0; m < 16; m++) {
      let q = 0;
      for (let t = 0; t < 5; t++) {
        q = q * 3 + values[x + 160 + 16 * t + m] + 1;
      }
      out[y + 32 + m] = storeTrits(q);
    }
    for (let j = 0; j < 4; j++) {
      let q = 0;
      for (let t = 0; t < 4; t++) {
        q = q * 3 + values[x + 240 + 4 * t + j] + 1;
      }
      out[y + 48 + j] = storeTrits(q * 3); // ×3 moves the first of 4 trits to the top position
    }
    const d = f32ToF16(typeof scales === "number" ? scales : scales[b]);
    out[y + 52] = d & 0xff;
    out[y + 53] = d >> 8;
  }
  return out;
}

/** Unpacks TQ1_0 into ternary values and per-block scales (as f32). */
export function unpackTQ1_0(
  bytes: Uint8Array,
  n: number,
): { values: Int8Array; scales: Float32Array } {
  checkBlocks("TQ1_0", n, TQ1_0_BLOCK);
  const nb = n / TQ1_0_BLOCK;
  checkBytes("TQ1_0", bytes, nb * TQ1_0_BYTES);
  const values = new Int8Array(n);
  const scales = new Float32Array(nb);
  for (let b = 0; b < nb; b++) {
    const x = b * TQ1_0_BLOCK;
    const y = b * TQ1_0_BYTES;
    for (let t = 0; t < 5; t++) {
      for (let m = 0; m < 32; m++) {
        values[x + 32 * t + m] = trit(bytes[y + m], t) - 1;
      }
      for (let m = 0; m < 16; m++) {
        values[x + 160 + 16 * t + m] = trit(bytes[y + 32 + m], t) - 1;
      }
    }
    for (let t = 0; t < 4; t++) {
      for (let j = 0; j < 4; j++) {
        values[x + 240 + 4 * t + j] = trit(bytes[y + 48 + j], t) - 1;
      }
    }
    scales[b] = f16ToF32(bytes[y + 52] | (bytes[y + 53] << 8));
  }
  return { values, scales };
}

/** Dequantizes TQ1_0 (ggml `dequantize_row_tq1_0`). */
export function dequantizeTQ1_0(
  bytes: Uint8Array,
  n: number,
  out: Float32Array = new Float32Array(n),
): Float32Array {
  const { values, scales } = unpackTQ1_0(bytes, n);
  for (let i = 0; i < n; i++) {
    out[i] = Math.fround(values[i] * scales[(i / TQ1_0_BLOCK) | 0]);
  }
  return out;
}

/** Quantizes floats to TQ1_0 as ggml's `quantize_row_tq1_0_ref` (d = block max|x|). */
export function quantizeTQ1_0(x: Float32Array): Uint8Array {
  const n = x.length;
  checkBlocks("TQ1_0", n, TQ1_0_BLOCK);
  const values = new Int8Array(n);
  const scales = new Float32Array(n / TQ1_0_BLOCK);
  for (let b = 0; b < scales.length; b++) {
    const o = b * TQ1_0_BLOCK;
    let amax = 0;
    for (let j = 0; j < TQ1_0_BLOCK; j++) {
      amax = Math.max(amax, Math.abs(x[o + j]));
    }
    const id = amax ? Math.fround(1 / amax) : 0;
    scales[b] = amax;
    for (let j = 0; j < TQ1_0_BLOCK; j++) {
      values[o + j] = roundHalfAwayFromZero(Math.fround(x[o + j] * id));
    }
  }
  return packTQ1_0(values, scales);
}
