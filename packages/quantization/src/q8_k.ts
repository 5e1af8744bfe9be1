/**
 * Q8_K (type 15): the activation format llama.cpp pairs with TQ1_0/TQ2_0 (and the K-quants).
 * Blocks of 256: f32 d, int8 qs[256], int16 bsums[16] (sums of each 16 qs). Never in files.
 */
import { checkBlocks, checkBytes } from "./errors";
import { nearestInt } from "./float";

export const Q8_K_BLOCK = 256;
export const Q8_K_BYTES = 292;

/** Quantized activations, struct-of-arrays (what reference kernels consume). */
export interface Q8KBlocks {
  /** One scale per block (negative when the block's extreme value is positive). */
  readonly d: Float32Array;
  /** The int8 values, `n` of them. */
  readonly qs: Int8Array;
  /** Sums of each group of 16 `qs`, 16 per block. */
  readonly bsums: Int16Array;
}

/**
 * ggml `quantize_row_q8_K_ref`: per block, `max` = the value with the largest magnitude (signed);
 * iscale = -127 / max; q = min(127, nearest_int(iscale · x)); d = 1 / iscale.
 */
export function quantizeQ8_K(x: Float32Array): Q8KBlocks {
  const n = x.length;
  checkBlocks("Q8_K", n, Q8_K_BLOCK);
  const nb = n / Q8_K_BLOCK;
  const d = new Float32Array(nb);
  const qs = new Int8Array(n);
  const bsums = new Int16Array(nb * 16);
  for (let b = 0; b < nb; b++) {
    const o = b * Q8_K_BLOCK;
    let max = 0;
    let amax = 0;
    for (let j = 0; j < Q8_K_BLOCK; j++) {
      const ax = Math.abs(x[o + j]);
      if (ax > amax) {
        amax = ax;
        max = x[o + j];
      }
    }
    if (amax === 0) {
      d[b] = 0;
      continue;
    }
    const iscale = Math.fround(-127 / max);
    for (let j = 0; j < Q8_K_BLOCK; j++) {
      qs[o + j] = Math.min(127, nearestInt(Math.fround(iscale * x[o + j])));
    }
    for (let g = 0; g < 16; g++) {
      let sum = 0;
      for (let i = 0; i < 16; i++) {
        sum += qs[o + 16 * g + i];
      }
      bsums[b * 16 + g] = sum;
    }
    d[b] = Math.fround(1 / iscale);
  }
  return { d, qs, bsums };
}

/** Serializes Q8_K blocks to their 292-byte ggml layout. */
export function encodeQ8_K(blocks: Q8KBlocks): Uint8Array {
  const nb = blocks.d.length;
  const out = new Uint8Array(nb * Q8_K_BYTES);
  const view = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const y = b * Q8_K_BYTES;
    view.setFloat32(y, blocks.d[b], true);
    out.set(
      new Uint8Array(blocks.qs.buffer, blocks.qs.byteOffset + b * Q8_K_BLOCK, Q8_K_BLOCK),
      y + 4,
    );
    for (let g = 0; g < 16; g++) {
      view.setInt16(y + 260 + 2 * g, blocks.bsums[b * 16 + g], true);
    }
  }
  return out;
}

/** Dequantizes Q8_K bytes: element = d × qs. */
export function dequantizeQ8_K(
  bytes: Uint8Array,
  n: number,
  out: Float32Array = new Float32Array(n),
): Float32Array {
  checkBlocks("Q8_K", n, Q8_K_BLOCK);
  checkBytes("Q8_K", bytes, (n / Q8_K_BLOCK) * Q8_K_BYTES);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let b = 0; b < n / Q8_K_BLOCK; b++) {
    const y = b * Q8_K_BYTES;
    const d = view.getFloat32(y, true);
    for (let j = 0; j < Q8_K_BLOCK; j++) {
      out[b * Q8_K_BLOCK + j] = Math.fround(d * view.getInt8(y + 4 + j));
    }
  }
  return out;
}
