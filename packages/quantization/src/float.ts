/**
 * IEEE half (F16) and bfloat16 (BF16) conversions with ggml's exact rounding, plus the integer
 * rounding helpers ggml's quantizers use. Everything here is bit-exact with ggml's C.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function bitsToF32(bits: number): number {
  u32[0] = bits;
  return f32[0];
}

function f32ToBits(x: number): number {
  f32[0] = x;
  return u32[0];
}

/** All 65536 half values as f32, so decoding is one table lookup. */
const F16_TABLE: Float32Array = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    let v: number;
    if (exp === 0) {
      v = mant * 2 ** -24;
    } else if (exp === 31) {
      v = mant === 0 ? Number.POSITIVE_INFINITY : Number.NaN;
    } else {
      v = (1 + mant / 1024) * 2 ** (exp - 15);
    }
    table[h] = sign * v;
  }
  return table;
})();

/** F16 bits → f32 value. */
export function f16ToF32(bits: number): number {
  return F16_TABLE[bits & 0xffff];
}

/**
 * f32 value → F16 bits, rounding to nearest even; NaN becomes 0x7E00. A port of
 * `ggml_compute_fp32_to_fp16` (ggml-impl.h, after Maratyszcza's FP16 library), so results match
 * ggml's scalar path bit for bit.
 */
export function f32ToF16(x: number): number {
  const scaleToInf = 5.192296858534828e33; // 2^112
  const scaleToZero = 7.703719777548943e-34; // 2^-110
  let base = Math.fround(Math.fround(Math.abs(Math.fround(x)) * scaleToInf) * scaleToZero);
  const w = f32ToBits(x);
  const shl1w = (w + w) >>> 0;
  const sign = w & 0x80000000;
  let bias = shl1w & 0xff000000;
  if (bias >>> 0 < 0x71000000) {
    bias = 0x71000000;
  }
  base = Math.fround(bitsToF32(((bias >>> 1) + 0x07800000) >>> 0) + base);
  const bits = f32ToBits(base);
  const expBits = (bits >>> 13) & 0x00007c00;
  const mantissaBits = bits & 0x00000fff;
  const nonsign = expBits + mantissaBits;
  return ((sign >>> 16) | (shl1w > 0xff000000 ? 0x7e00 : nonsign)) & 0xffff;
}

/** The f32 value nearest to `x` that F16 can represent (f16ToF32(f32ToF16(x))). */
export function roundToF16(x: number): number {
  return F16_TABLE[f32ToF16(x)];
}

/** BF16 bits → f32 value. */
export function bf16ToF32(bits: number): number {
  return bitsToF32(((bits & 0xffff) << 16) >>> 0);
}

/** f32 value → BF16 bits, rounding to nearest even; NaN stays a quiet NaN (ggml_compute_fp32_to_bf16). */
export function f32ToBf16(x: number): number {
  const i = f32ToBits(x);
  if ((i & 0x7fffffff) >>> 0 > 0x7f800000) {
    return ((i >>> 16) | 64) & 0xffff;
  }
  return ((i + (0x7fff + ((i >>> 16) & 1))) >>> 16) & 0xffff;
}

/** Encodes f32 values as little-endian F16 bytes. */
export function encodeF16(values: ArrayLike<number>): Uint8Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    out[i] = f32ToF16(values[i]);
  }
  return new Uint8Array(out.buffer);
}

/** Decodes little-endian F16 bytes to f32 values. */
export function decodeF16(
  bytes: Uint8Array,
  out: Float32Array = new Float32Array(bytes.length >> 1),
): Float32Array {
  const n = bytes.length >> 1;
  for (let i = 0; i < n; i++) {
    out[i] = F16_TABLE[bytes[2 * i] | (bytes[2 * i + 1] << 8)];
  }
  return out;
}

/** Encodes f32 values as little-endian BF16 bytes. */
export function encodeBf16(values: ArrayLike<number>): Uint8Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    out[i] = f32ToBf16(values[i]);
  }
  return new Uint8Array(out.buffer);
}

/** Decodes little-endian BF16 bytes to f32 values. */
export function decodeBf16(
  bytes: Uint8Array,
  out: Float32Array = new Float32Array(bytes.length >> 1),
): Float32Array {
  const n = bytes.length >> 1;
  for (let i = 0; i < n; i++) {
    out[i] = bf16ToF32(bytes[2 * i] | (bytes[2 * i + 1] << 8));
  }
  return out;
}

/** Encodes f32 values as little-endian F32 bytes. */
export function encodeF32(values: ArrayLike<number>): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

/** Decodes little-endian F32 bytes (any alignment) to f32 values. */
export function decodeF32(
  bytes: Uint8Array,
  out: Float32Array = new Float32Array(bytes.length >> 2),
): Float32Array {
  new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(bytes.subarray(0, out.byteLength));
  return out;
}

/**
 * ggml's `nearest_int`: rounds an f32 to the nearest integer, ties to even, by adding 1.5·2^23
 * in f32 arithmetic. Valid for |x| < 2^22, which every caller guarantees.
 */
export function nearestInt(x: number): number {
  return Math.fround(Math.fround(x) + 12582912) - 12582912;
}

/** C's `roundf`/`lroundf`: nearest integer, ties away from zero. */
export function roundHalfAwayFromZero(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/** Round half to even (torch.round / numpy.round semantics) of a double. */
export function roundHalfToEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
