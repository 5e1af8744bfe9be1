/**
 * TQ2_0: mainline ggml's 2-bit ternary format (type 35). Blocks of 256 elements in 66 bytes:
 * 64 bytes of 2-bit codes then an f16 scale d. For chunk c (0..1), bit pair l (0..3) and
 * byte m (0..31), element 128c + 32l + m = (((qs[32c + m] >> 2l) & 3) - 1) × d.
 */
import { checkBlocks, checkBytes, QuantizationError } from "./errors";
import { f16ToF32, f32ToF16, roundHalfAwayFromZero } from "./float";

export const TQ2_0_BLOCK = 256;
export const TQ2_0_BYTES = 66;

/**
 * TQ2_0's 64 code bytes per 256-element block, without the scales (the layout GPU kernels read,
 * with the block scales kept apart so that every code word is 4-byte aligned).
 */
export function packTQ2Codes(values: Int8Array): Uint8Array {
  checkBlocks("TQ2_0", values.length, TQ2_0_BLOCK);
  const out = new Uint8Array(values.length / 4);
  for (let b = 0; b < values.length / TQ2_0_BLOCK; b++) {
    for (let c = 0; c < 2; c++) {
      for (let m = 0; m < 32; m++) {
        const x = TQ2_0_BLOCK * b + 128 * c + m;
        out[64 * b + 32 * c + m] =
          (values[x]! + 1) |
          ((values[x + 32]! + 1) << 2) |
          ((values[x + 64]! + 1) << 4) |
          ((values[x + 96]! + 1) << 6);
      }
    }
  }
  return out;
}

/**
 * Packs ternary values with one scale per 256-element block (or one scale for all blocks).
 * Scales are stored as f16.
 */
export function packTQ2_0(values: Int8Array, scales: Float32Array | number): Uint8Array {
  const n = values.length;
  checkBlocks("TQ2_0", n, TQ2_0_BLOCK);
  const nb = n / TQ2_0_BLOCK;
  const out = new Uint8Array(nb * TQ2_0_BYTES);
  for (let b = 0; b < nb; b++) {
    const x = b * TQ2_0_BLOCK;
    const y = b * TQ2_0_BYTES;
    for (let c = 0; c < 2; c++) {
      for (let m = 0; m < 32; m++) {
        let q = 0;
        for (let l = 0; l < 4; l++) {
          const code = values[x + 128 * c + 32 * l + m] + 1;
          if (code < 0 || code > 2) {
            throw new QuantizationError(
              `could not pack TQ2_0 - values must be -1, 0 or +1 (element ${x + 128 * c + 32 * l + m}).`,
            );
          }
          q |= code << (2 * l);
        }
        out[y + 32 * c + m] = q;
      }
    }
    const d = f32ToF16(typeof scales === "number" ? scales : scales[b]);
    out[y + 64] = d & 0xff;
    out[y + 65] = d >> 8;
  }
  return out;
}

/** Unpacks TQ2_0 into ternary values and the per-block scales (as f32). */
export function unpackTQ2_0(
  bytes: Uint8Array,
  n: number,
): { values: Int8Array; scales: Float32Array } {
  checkBlocks("TQ2_0", n, TQ2_0_BLOCK);
  const nb = n / TQ2_0_BLOCK;
  checkBytes("TQ2_0", bytes, nb * TQ2_0_BYTES);
  const values = new Int8Array(n);
  const scales = new Float32Array(nb);
  for (let b = 0; b < nb; b++) {
    const x = b * TQ2_0_BLOCK;
    const y = b * TQ2_0_BYTES;
    for (let c = 0; c < 2; c++) {
      for (let l = 0; l < 4; l++) {
        for (let m = 0; m < 32; m++) {
          values[x + 128 * c + 32 * l + m] = ((bytes[y + 32 * c + m] >> (2 * l)) & 3) - 1;
        }
      }
    }
    scales[b] = f16ToF32(bytes[y + 64] | (bytes[y + 65] << 8));
  }
  return { values, scales };
}

/** Dequantizes TQ2_0 (ggml `dequantize_row_tq2_0`). */
export function dequantizeTQ2_0(
  bytes: Uint8Array,
  n: number,
  out: Float32Array = new Float32Array(n),
): Float32Array {
  const { values, scales } = unpackTQ2_0(bytes, n);
  for (let i = 0; i < n; i++) {
    out[i] = Math.fround(values[i] * scales[(i / TQ2_0_BLOCK) | 0]);
  }
  return out;
}

/**
 * Quantizes floats to TQ2_0 as ggml's `quantize_row_tq2_0_ref`: d = max|x| of the block,
 * code = lround(x / d) + 1.
 */
export function quantizeTQ2_0(x: Float32Array): Uint8Array {
  const n = x.length;
  checkBlocks("TQ2_0", n, TQ2_0_BLOCK);
  const values = new Int8Array(n);
  const scales = new Float32Array(n / TQ2_0_BLOCK);
  for (let b = 0; b < scales.length; b++) {
    const o = b * TQ2_0_BLOCK;
    let amax = 0;
    for (let j = 0; j < TQ2_0_BLOCK; j++) {
      amax = Math.max(amax, Math.abs(x[o + j]));
    }
    const id = amax ? Math.fround(1 / amax) : 0;
    scales[b] = amax;
    for (let j = 0; j < TQ2_0_BLOCK; j++) {
      values[o + j] = roundHalfAwayFromZero(Math.fround(x[o + j] * id));
    }
  }
  return packTQ2_0(values, scales);
}
