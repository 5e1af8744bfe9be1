/**
 * The reference kernels: plain loops, obviously correct, the oracle every other backend is
 * checked against. Two numerics:
 *
 * - "ggml": f32 arithmetic with the rounding points of ggml's CPU backend (Math.fround after every
 *   f32 operation, f16 KV cache, activations rounded to f16 before F16 matmuls, f16 attention
 *   probabilities, sequential f32 accumulation as in ggml's generic kernels). This is the default:
 *   it stays as close to llama.cpp / bitnet.cpp as a different summation order allows.
 * - "f64": every value a double; activation quantization applied to the double values. The
 *   yardstick for cross-validation: a correct implementation with another summation order.
 *
 * Buffers are Float64Array in both modes; in "ggml" mode every stored value is an f32 value.
 */
import { f16ToF32, roundToF16 } from "@bitnet-ts/quantization";
import type { LinearWeight } from "./weights";

export type Numerics = "ggml" | "f64";

const fround = Math.fround;

/** Round half to even on a double (f64-mode activation quantization). */
function rint(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** ggml nearest_int on an f32 value. */
function nearestInt(x: number): number {
  return fround(x + 12582912) - 12582912;
}

/**
 * Σ values[base + c] · q[c] for c in [start, end): the exact integer dot product of a ternary
 * weight row and quantized activations (every backend must reproduce it bit for bit).
 */
export function ternaryDot(
  values: Int8Array,
  base: number,
  q: Int32Array,
  start: number,
  end: number,
): number {
  let dot = 0;
  for (let c = start; c < end; c++) {
    dot += values[base + c]! * q[c]!;
  }
  return dot;
}

/** out[t] = x[t] / sqrt(mean(x[t]²) + eps) ⊙ w, for `rows` rows of width n. */
export function rmsNorm(
  x: Float64Array,
  w: Float32Array,
  out: Float64Array,
  rows: number,
  n: number,
  eps: number,
  mode: Numerics,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    let sum = 0;
    if (mode === "ggml") {
      for (let i = 0; i < n; i++) {
        sum += fround(x[o + i]! * x[o + i]!); // squares in f32, summed in double (ggml_float)
      }
      const mean = fround(sum / n);
      const scale = fround(1 / fround(Math.sqrt(fround(mean + fround(eps)))));
      for (let i = 0; i < n; i++) {
        out[o + i] = fround(fround(x[o + i]! * scale) * w[i]!);
      }
    } else {
      for (let i = 0; i < n; i++) {
        sum += x[o + i]! * x[o + i]!;
      }
      const scale = 1 / Math.sqrt(sum / n + eps);
      for (let i = 0; i < n; i++) {
        out[o + i] = x[o + i]! * scale * w[i]!;
      }
    }
  }
}

/**
 * out = W x for each row of x. Ternary weights quantize the activation first: per token to
 * int8 with absmax (I2_S, bitnet.cpp's quantize_row_i8_s) or per 256 block to Q8_K (TQ types,
 * llama.cpp); the integer dot products are exact and the scales are applied once per block.
 */
export function linear(
  w: LinearWeight,
  x: Float64Array,
  out: Float64Array,
  rows: number,
  outScale: number,
  mode: Numerics,
): void {
  const { cols } = w;
  const xr = new Float64Array(cols);
  const q = new Int32Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      xr[c] = x[r * cols + c]!;
    }
    const y = out.subarray(r * w.rows, (r + 1) * w.rows);
    if (w.kind === "float") {
      linearFloat(w, xr, y, mode);
    } else if (w.activationQuant === "per-token-int8") {
      linearPerToken(w, xr, q, y, mode);
    } else {
      linearQ8K(w, xr, q, y, mode);
    }
    if (outScale !== 1) {
      for (let i = 0; i < w.rows; i++) {
        y[i] = mode === "ggml" ? fround(y[i]! * outScale) : y[i]! * outScale;
      }
    }
  }
}

function linearPerToken(
  w: LinearWeight,
  x: Float64Array,
  q: Int32Array,
  y: Float64Array,
  mode: Numerics,
): void {
  const { cols, rows } = w;
  const values = w.values!;
  const scales = w.scales!;
  let max = 0.00001;
  for (let c = 0; c < cols; c++) {
    max = Math.max(max, Math.abs(x[c]!));
  }
  if (mode === "ggml") {
    const s = fround(127 / max);
    for (let c = 0; c < cols; c++) {
      q[c] = Math.max(-128, Math.min(127, nearestInt(fround(x[c]! * s))));
    }
    for (let r = 0; r < rows; r++) {
      const dot = ternaryDot(values, r * cols, q, 0, cols);
      y[r] = fround(fround(dot / s) * scales[r]!);
    }
  } else {
    const s = 127 / max;
    for (let c = 0; c < cols; c++) {
      q[c] = Math.max(-128, Math.min(127, rint(x[c]! * s)));
    }
    for (let r = 0; r < rows; r++) {
      const dot = ternaryDot(values, r * cols, q, 0, cols);
      y[r] = (dot / s) * scales[r]!;
    }
  }
}

function linearQ8K(
  w: LinearWeight,
  x: Float64Array,
  q: Int32Array,
  y: Float64Array,
  mode: Numerics,
): void {
  const { cols, rows } = w;
  const values = w.values!;
  const scales = w.scales!;
  const nb = cols / 256;
  const da = new Float64Array(nb);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    let max = 0;
    for (let c = 256 * b; c < 256 * b + 256; c++) {
      const a = Math.abs(x[c]!);
      if (a > amax) {
        amax = a;
        max = x[c]!;
      }
    }
    if (amax === 0) {
      da[b] = 0;
      q.fill(0, 256 * b, 256 * b + 256);
      continue;
    }
    if (mode === "ggml") {
      const iscale = fround(-127 / max);
      for (let c = 256 * b; c < 256 * b + 256; c++) {
        q[c] = Math.min(127, nearestInt(fround(iscale * x[c]!)));
      }
      da[b] = fround(1 / iscale);
    } else {
      const iscale = -127 / max;
      for (let c = 256 * b; c < 256 * b + 256; c++) {
        q[c] = Math.min(127, rint(iscale * x[c]!));
      }
      da[b] = 1 / iscale;
    }
  }
  for (let r = 0; r < rows; r++) {
    let sumf = 0;
    const base = r * cols;
    for (let b = 0; b < nb; b++) {
      const sumi = ternaryDot(values, base, q, 256 * b, 256 * b + 256);
      const dw = scales[r * nb + b]!;
      if (mode === "ggml") {
        // ggml_vec_dot_tq2_0_q8_K: d = y.d * x.d; sumf += (float) sumi * d.
        sumf = fround(sumf + fround(sumi * fround(da[b]! * dw)));
      } else {
        sumf += sumi * dw * da[b]!;
      }
    }
    y[r] = sumf;
  }
}

function linearFloat(w: LinearWeight, x: Float64Array, y: Float64Array, mode: Numerics): void {
  const { cols, rows } = w;
  const f = w.floats!;
  if (mode === "ggml" && w.f16Activations) {
    for (let c = 0; c < cols; c++) {
      x[c] = roundToF16(x[c]!);
    }
  }
  for (let r = 0; r < rows; r++) {
    let acc = 0;
    const base = r * cols;
    if (mode === "ggml") {
      for (let c = 0; c < cols; c++) {
        acc = fround(acc + f[base + c]! * x[c]!);
      }
    } else {
      for (let c = 0; c < cols; c++) {
        acc += f[base + c]! * x[c]!;
      }
    }
    y[r] = acc;
  }
}

/** NeoX RoPE in place-free form: out = rotate(x) for `heads` heads of `headDim`, first nRot dims. */
export function ropeNeox(
  x: Float64Array,
  out: Float64Array,
  positions: Int32Array,
  heads: number,
  headDim: number,
  nRot: number,
  base: number,
  mode: Numerics,
): void {
  const width = heads * headDim;
  const half = nRot / 2;
  const cos = new Float64Array(half);
  const sin = new Float64Array(half);
  for (let t = 0; t < positions.length; t++) {
    const p = positions[t]!;
    if (mode === "ggml") {
      // ggml_rope_cache_init: theta starts at p and is multiplied by theta_scale = powf(base, -2/n_dims).
      const thetaScale = fround(base ** fround(-2 / nRot));
      let theta = fround(p);
      for (let i = 0; i < half; i++) {
        cos[i] = fround(Math.cos(theta));
        sin[i] = fround(Math.sin(theta));
        theta = fround(theta * thetaScale);
      }
    } else {
      for (let i = 0; i < half; i++) {
        const theta = p * base ** ((-2 * i) / nRot);
        cos[i] = Math.cos(theta);
        sin[i] = Math.sin(theta);
      }
    }
    for (let h = 0; h < heads; h++) {
      const o = t * width + h * headDim;
      for (let i = 0; i < half; i++) {
        const x0 = x[o + i]!;
        const x1 = x[o + i + half]!;
        if (mode === "ggml") {
          out[o + i] = fround(fround(x0 * cos[i]!) - fround(x1 * sin[i]!));
          out[o + i + half] = fround(fround(x0 * sin[i]!) + fround(x1 * cos[i]!));
        } else {
          out[o + i] = x0 * cos[i]! - x1 * sin[i]!;
          out[o + i + half] = x0 * sin[i]! + x1 * cos[i]!;
        }
      }
      for (let i = nRot; i < headDim; i++) {
        out[o + i] = x[o + i]!;
      }
    }
  }
}

/**
 * Causal GQA attention of one token's q over the first `length` cached keys/values of its
 * sequence. ggml mode follows llama.cpp's non-flash path: q rounded to f16 against the f16 K
 * cache, scaled softmax in f32 with a double sum, probabilities rounded to f16 against f16 V.
 */
export function attendOne(
  q: Float64Array,
  qOffset: number,
  keys: Float64Array,
  values: Float64Array,
  length: number,
  nHead: number,
  nHeadKv: number,
  headDim: number,
  out: Float64Array,
  outOffset: number,
  mode: Numerics,
): void {
  const kvWidth = nHeadKv * headDim;
  const group = nHead / nHeadKv;
  const scale = 1 / Math.sqrt(headDim);
  const scores = new Float64Array(length);
  const qh = new Float64Array(headDim);
  for (let h = 0; h < nHead; h++) {
    const kvh = Math.floor(h / group);
    for (let i = 0; i < headDim; i++) {
      qh[i] =
        mode === "ggml" ? roundToF16(q[qOffset + h * headDim + i]!) : q[qOffset + h * headDim + i]!;
    }
    let max = Number.NEGATIVE_INFINITY;
    for (let t = 0; t < length; t++) {
      const k = t * kvWidth + kvh * headDim;
      let s = 0;
      if (mode === "ggml") {
        for (let i = 0; i < headDim; i++) {
          s = fround(s + qh[i]! * keys[k + i]!);
        }
        s = fround(s * fround(scale));
      } else {
        for (let i = 0; i < headDim; i++) {
          s += qh[i]! * keys[k + i]!;
        }
        s *= scale;
      }
      scores[t] = s;
      max = Math.max(max, s);
    }
    let sum = 0;
    for (let t = 0; t < length; t++) {
      const e =
        mode === "ggml" ? fround(Math.exp(fround(scores[t]! - max))) : Math.exp(scores[t]! - max);
      scores[t] = e;
      sum += e;
    }
    const inv = mode === "ggml" ? fround(1 / sum) : 1 / sum;
    for (let t = 0; t < length; t++) {
      scores[t] = mode === "ggml" ? roundToF16(fround(scores[t]! * inv)) : scores[t]! * inv;
    }
    const o = outOffset + h * headDim;
    for (let i = 0; i < headDim; i++) {
      let acc = 0;
      if (mode === "ggml") {
        for (let t = 0; t < length; t++) {
          acc = fround(acc + scores[t]! * values[t * kvWidth + kvh * headDim + i]!);
        }
      } else {
        for (let t = 0; t < length; t++) {
          acc += scores[t]! * values[t * kvWidth + kvh * headDim + i]!;
        }
      }
      out[o + i] = acc;
    }
  }
}

/** out = act(gate) ⊙ up. */
export function glu(
  gate: Float64Array,
  up: Float64Array,
  out: Float64Array,
  n: number,
  activation: "relu2" | "silu",
  mode: Numerics,
): void {
  for (let i = 0; i < n; i++) {
    const g = gate[i]!;
    if (activation === "relu2") {
      // biome-ignore lint/complexity/useMathMinMax: ggml's relu is (x > 0 ? x : 0), which maps NaN to 0.
      const r = g > 0 ? g : 0;
      out[i] = mode === "ggml" ? fround(fround(r * r) * up[i]!) : r * r * up[i]!;
    } else if (mode === "ggml") {
      out[i] = fround(fround(g / fround(1 + fround(Math.exp(-g)))) * up[i]!);
    } else {
      out[i] = (g / (1 + Math.exp(-g))) * up[i]!;
    }
  }
}

export function add(
  a: Float64Array,
  b: Float64Array,
  out: Float64Array,
  n: number,
  mode: Numerics,
): void {
  for (let i = 0; i < n; i++) {
    out[i] = mode === "ggml" ? fround(a[i]! + b[i]!) : a[i]! + b[i]!;
  }
}

/** Rounds to what the KV cache stores (f16 in ggml mode, like llama.cpp's default cache type). */
export function toCache(x: number, mode: Numerics): number {
  return mode === "ggml" ? roundToF16(x) : x;
}

/**
 * The output head for one row: logits[t] = Σ_i W[t, i] · y[i]. With F16 weights (`f16Bits`),
 * ggml mode rounds y to f16 first, as ggml converts the activation to the weight's dot type.
 */
export function headRow(
  y: Float64Array,
  yOffset: number,
  n: number,
  vocab: number,
  f16Bits: Uint16Array | undefined,
  floats: Float32Array | undefined,
  out: Float32Array,
  outOffset: number,
  mode: Numerics,
): void {
  const yr = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    yr[i] =
      mode === "ggml" && f16Bits !== undefined ? roundToF16(y[yOffset + i]!) : y[yOffset + i]!;
  }
  if (f16Bits !== undefined) {
    const table = F16;
    for (let t = 0; t < vocab; t++) {
      const base = t * n;
      let acc = 0;
      if (mode === "ggml") {
        for (let i = 0; i < n; i++) {
          acc = fround(acc + table[f16Bits[base + i]!]! * yr[i]!);
        }
      } else {
        for (let i = 0; i < n; i++) {
          acc += table[f16Bits[base + i]!]! * yr[i]!;
        }
      }
      out[outOffset + t] = acc;
    }
    return;
  }
  const f = floats!;
  for (let t = 0; t < vocab; t++) {
    const base = t * n;
    let acc = 0;
    if (mode === "ggml") {
      for (let i = 0; i < n; i++) {
        acc = fround(acc + f[base + i]! * yr[i]!);
      }
    } else {
      for (let i = 0; i < n; i++) {
        acc += f[base + i]! * yr[i]!;
      }
    }
    out[outOffset + t] = acc;
  }
}

/** f16 bits → value, as a flat table (faster than a call per element). */
const F16: Float32Array = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    table[h] = f16ToF32(h);
  }
  return table;
})();

export { F16 as F16_TABLE };
