/**
 * The WGSL kernels, generated per shape: widths, block counts and the activation quantization
 * are compile-time constants of each shader, so loops have fixed bounds and no kernel reads a
 * shape from memory. Every kernel reads the step's token count from the `step` uniform; a
 * workgroup past it returns at once (uniformly: the count is the same for the whole dispatch).
 *
 * Layouts (see weights.ts): ternary weights are 2-bit codes (value + 1) in the file's own order,
 * I2_S as is and TQ2_0 without its block scales, so a shift and a mask of a u32 word give four
 * int8 lanes (four consecutive columns) ready for `dot4I8Packed` against one word of quantized
 * activations; the dot of (code) × q minus Σq is the dot of the ternary values, exactly.
 */

/** How a linear's activations are quantized (ARCHITECTURE.md, Numerics). */
export type QuantMode = "per-token-int8" | "q8_k";

/**
 * f32 → f16 bits with round-to-nearest-even, as ggml's conversion (and the reference) does.
 * WGSL leaves the rounding of pack2x16float to the implementation (lavapipe truncates), so the
 * kernels round by hand and use unpack2x16float, which is exact, to read f16 back.
 */
const F16_RNE = /* wgsl */ `
fn f16Bits(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  let sign = (b >> 16u) & 0x8000u;
  let a = b & 0x7fffffffu;
  if (a > 0x7f800000u) { return sign | 0x7e00u; }
  if (a >= 0x477ff000u) { return sign | 0x7c00u; }
  if (a < 0x38800000u) { return sign | u32(round(bitcast<f32>(a) * 16777216.0)); }
  let r = a - 0x38000000u;
  return sign | ((r + 0x0fffu + ((r >> 13u) & 1u)) >> 13u);
}
fn roundF16(x: f32) -> f32 { return unpack2x16float(f16Bits(x)).x; }
fn packF16(a: f32, b: f32) -> u32 { return f16Bits(a) | (f16Bits(b) << 16u); }
`;

/** The step uniform every kernel binds: tokens in the step, logits rows in the step (and the f16 helpers). */
export const STEP_STRUCT: string = /* wgsl */ `
struct Step { tokens: u32, rows: u32, pad0: u32, pad1: u32 }
${F16_RNE}
`;

const f = (x: number): string => {
  const s = Number.isInteger(x) ? `${x}.0` : x.toPrecision(9);
  return s;
};

/** Tree reductions over workgroup arrays (`size` a power of two): sums and maxima. */
function reducers(size: number): string {
  const reducer = (
    name: string,
    array: string,
    type: string,
    combine: (a: string, b: string) => string,
  ) => /* wgsl */ `
fn ${name}(lid: u32, v: ${type}) -> ${type} {
  ${array}[lid] = v;
  workgroupBarrier();
  for (var s = ${size / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { ${array}[lid] = ${combine(`${array}[lid]`, `${array}[lid + s]`)}; }
    workgroupBarrier();
  }
  let r = ${array}[0];
  workgroupBarrier();
  return r;
}`;
  return /* wgsl */ `
var<workgroup> redf: array<f32, ${size}>;
var<workgroup> redi: array<i32, ${size}>;
var<workgroup> redu: array<u32, ${size}>;
${reducer("reduceSumF", "redf", "f32", (a, b) => `${a} + ${b}`)}
${reducer("reduceMaxF", "redf", "f32", (a, b) => `max(${a}, ${b})`)}
${reducer("reduceSumI", "redi", "i32", (a, b) => `${a} + ${b}`)}
`;
}

const NORM_WG = 256;

/**
 * Activation quantization of one token's row `src[base .. base + n)`, run by a whole workgroup
 * of NORM_WG threads: per token to int8 with absmax (bitnet.cpp's quantize_row_i8_s) or per
 * 256 block to Q8_K (llama.cpp's quantize_row_q8_K), with the ggml rounding (round half to even).
 * Writes q (int8 × 4 per u32), qscale (the token's 127/max, or each block's 1/iscale) and qsum
 * (Σq of the token or the block, so that ternary codes can stand in for the values).
 */
function quantizeBody(src: string, n: number, mode: QuantMode, qStride: number, nbMax: number) {
  if (mode === "per-token-int8") {
    return /* wgsl */ `
  {
    var mx = 0.0;
    for (var i = lid; i < ${n}u; i += ${NORM_WG}u) { mx = max(mx, abs(${src}[base + i])); }
    let amax = max(reduceMaxF(lid, mx), 0.00001);
    let s = 127.0 / amax;
    var qs = 0i;
    for (var j = lid; j < ${n / 4}u; j += ${NORM_WG}u) {
      var packed = 0u;
      for (var k = 0u; k < 4u; k++) {
        let qi = i32(clamp(round(${src}[base + 4u * j + k] * s), -128.0, 127.0));
        qs += qi;
        packed |= (u32(qi) & 0xffu) << (8u * k);
      }
      q[t * ${qStride}u + j] = packed;
    }
    let total = reduceSumI(lid, qs);
    if (lid == 0u) {
      qscale[t * ${nbMax}u] = s;
      qsum[t * ${nbMax}u] = total;
    }
  }`;
  }
  return /* wgsl */ `
  for (var b = 0u; b < ${n / 256}u; b++) {
    let v = ${src}[base + 256u * b + lid];
    // The block's value of largest magnitude, the first one on ties (ggml's scan order).
    redf[lid] = abs(v);
    redu[lid] = lid;
    workgroupBarrier();
    for (var s = ${NORM_WG / 2}u; s > 0u; s >>= 1u) {
      if (lid < s) {
        let a = redf[lid];
        let c = redf[lid + s];
        if (c > a || (c == a && redu[lid + s] < redu[lid])) {
          redf[lid] = c;
          redu[lid] = redu[lid + s];
        }
      }
      workgroupBarrier();
    }
    let amax = redf[0];
    let at = redu[0];
    workgroupBarrier();
    let mx = ${src}[base + 256u * b + at];
    var qi = 0i;
    var d = 0.0;
    if (amax != 0.0) {
      let iscale = -127.0 / mx;
      qi = i32(min(127.0, round(iscale * v)));
      d = 1.0 / iscale;
    }
    redi[lid] = qi;
    workgroupBarrier();
    if (lid < 64u) {
      var packed = 0u;
      for (var k = 0u; k < 4u; k++) {
        packed |= (u32(redi[4u * lid + k]) & 0xffu) << (8u * k);
      }
      q[t * ${qStride}u + 64u * b + lid] = packed;
    }
    workgroupBarrier();
    let total = reduceSumI(lid, qi);
    if (lid == 0u) {
      qscale[t * ${nbMax}u + b] = d;
      qsum[t * ${nbMax}u + b] = total;
    }
  }`;
}

export interface QuantTarget {
  readonly mode: QuantMode;
  /** u32 words per token in the q buffer (widest quantized row / 4). */
  readonly qStride: number;
  /** Scales per token in qscale/qsum (blocks of the widest Q8_K row, at least 1). */
  readonly nbMax: number;
}

const QUANT_BINDINGS = (first: number) => /* wgsl */ `
@group(0) @binding(${first}) var<storage, read_write> q: array<u32>;
@group(0) @binding(${first + 1}) var<storage, read_write> qscale: array<f32>;
@group(0) @binding(${first + 2}) var<storage, read_write> qsum: array<i32>;
`;

/**
 * RMSNorm of each token's row, one workgroup per token; with `quant`, the same workgroup then
 * quantizes the normalized row for the linear that reads it (the norm fused with the
 * activation quantization: one dispatch, no second pass over the row).
 */
export function rmsNormShader(n: number, eps: number, quant: QuantTarget | undefined): string {
  return /* wgsl */ `${STEP_STRUCT}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> step: Step;
${quant === undefined ? "" : QUANT_BINDINGS(4)}
${reducers(NORM_WG)}
@compute @workgroup_size(${NORM_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x;
  if (t >= step.tokens) { return; }
  let base = t * ${n}u;
  var ss = 0.0;
  for (var i = lid; i < ${n}u; i += ${NORM_WG}u) { let v = x[base + i]; ss += v * v; }
  let mean = reduceSumF(lid, ss) / ${f(n)};
  let scale = 1.0 / sqrt(mean + ${f(eps)});
  for (var i = lid; i < ${n}u; i += ${NORM_WG}u) { y[base + i] = (x[base + i] * scale) * w[i]; }
  ${quant === undefined ? "" : `storageBarrier();\n${quantizeBody("y", n, quant.mode, quant.qStride, quant.nbMax)}`}
}
`;
}

/** Activation quantization on its own (a linear input that no norm produced, or injected). */
export function quantizeShader(n: number, quant: QuantTarget): string {
  return /* wgsl */ `${STEP_STRUCT}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<uniform> step: Step;
${QUANT_BINDINGS(2)}
${reducers(NORM_WG)}
@compute @workgroup_size(${NORM_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x;
  if (t >= step.tokens) { return; }
  let base = t * ${n}u;
  ${quantizeBody("x", n, quant.mode, quant.qStride, quant.nbMax)}
}
`;
}

/** The 2-bit code layout of a ternary weight buffer (see weights.ts). */
export type TernaryCodes = "i2_s" | "tq2_0";

/** Rows of the weight matrix per workgroup (16 lanes each) and tokens per thread. */
export const LINEAR_ROWS = 4;
export const LINEAR_TOKENS = 4;

/**
 * y = W x for a ternary W on quantized activations, 4 rows × 16 lanes per workgroup, 4 tokens
 * per thread (each weight word is decoded once for four tokens). The integer sums are exact;
 * per-token-int8: y = (dot / s) · scale; q8_k: Σ over blocks, in block order, of sumi · (d · dw),
 * as ggml's vec_dot_tq2_0_q8_K adds them.
 */
export function ternaryLinearShader(
  rows: number,
  cols: number,
  quant: QuantTarget,
  codes: TernaryCodes,
  subgroups = false,
): { code: string; workgroups: (tokens: number) => [number, number] } {
  const words = cols / 16;
  const nb = quant.mode === "q8_k" ? cols / 256 : 1;
  const rowGroups = Math.ceil(rows / LINEAR_ROWS);
  const header = /* wgsl */ `${STEP_STRUCT}
struct Params { outScale: f32, pad0: f32, pad1: f32, pad2: f32 }
@group(0) @binding(0) var<storage, read> wq: array<u32>;
@group(0) @binding(1) var<storage, read> wscale: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<u32>;
@group(0) @binding(3) var<storage, read> qscale: array<f32>;
@group(0) @binding(4) var<storage, read> qsum: array<i32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<uniform> step: Step;
@group(0) @binding(7) var<uniform> params: Params;
const TT = ${LINEAR_TOKENS}u;
`;
  // Word w of a row holds, in each of its four bytes' 2-bit fields, columns of four groups of 32
  // (I2_S: group g at shift 6 − 2g; TQ2_0: at shift 2g): shift + mask gives four consecutive
  // columns, whose activations are word 32·(w / 8) + 8g + w % 8 of the quantized row.
  const shifts = codes === "i2_s" ? [6, 4, 2, 0] : [0, 2, 4, 6];
  const wordDot = /* wgsl */ `
fn wordDot(wv: u32, qb: u32) -> i32 {
  return dot4I8Packed((wv >> ${shifts[0]}u) & 0x03030303u, q[qb])
    + dot4I8Packed((wv >> ${shifts[1]}u) & 0x03030303u, q[qb + 8u])
    + dot4I8Packed((wv >> ${shifts[2]}u) & 0x03030303u, q[qb + 16u])
    + dot4I8Packed((wv >> ${shifts[3]}u) & 0x03030303u, q[qb + 24u]);
}
fn qWord(w: u32) -> u32 { return (w >> 3u) * 32u + (w & 7u); }`;
  let code: string;
  if (quant.mode === "per-token-int8" && subgroups) {
    // All 64 threads walk each of the workgroup's rows in turn (consecutive words: coalesced
    // loads); subgroupAdd folds each subgroup's integer sums, and one partial per subgroup goes
    // through workgroup memory. A subgroup learns its index from an atomic counter, so nothing
    // assumes how invocations map to subgroups. Integer sums: exact in any order.
    code = /* wgsl */ `enable subgroups;
${header}
var<workgroup> part: array<i32, ${64 * LINEAR_TOKENS}>;
var<workgroup> subgroupCount: atomic<u32>;
${wordDot}
@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_index) lid: u32,
  @builtin(subgroup_invocation_id) sl: u32,
) {
  let t0 = wid.y * TT;
  if (t0 >= step.tokens) { return; }
  var k = 0u;
  if (sl == 0u) { k = atomicAdd(&subgroupCount, 1u); }
  k = subgroupBroadcastFirst(k);
  for (var r = 0u; r < ${LINEAR_ROWS}u; r++) {
    let row = wid.x * ${LINEAR_ROWS}u + r;
    var acc = array<i32, ${LINEAR_TOKENS}>();
    if (row < ${rows}u) {
      for (var w = lid; w < ${words}u; w += 64u) {
        let wv = wq[row * ${words}u + w];
        for (var tt = 0u; tt < TT; tt++) {
          if (t0 + tt < step.tokens) {
            acc[tt] += wordDot(wv, (t0 + tt) * ${quant.qStride}u + qWord(w));
          }
        }
      }
    }
    for (var tt = 0u; tt < TT; tt++) {
      let sum = subgroupAdd(acc[tt]);
      if (sl == 0u) { part[(k * ${LINEAR_ROWS}u + r) * TT + tt] = sum; }
    }
  }
  workgroupBarrier();
  let subgroups = atomicLoad(&subgroupCount);
  let r = lid / TT;
  let tt = lid % TT;
  let row = wid.x * ${LINEAR_ROWS}u + r;
  let t = t0 + tt;
  if (r < ${LINEAR_ROWS}u && row < ${rows}u && t < step.tokens) {
    var dot = 0i;
    for (var j = 0u; j < subgroups; j++) { dot += part[(j * ${LINEAR_ROWS}u + r) * TT + tt]; }
    dot -= qsum[t * ${quant.nbMax}u];
    let v = (f32(dot) / qscale[t * ${quant.nbMax}u]) * wscale[row];
    y[t * ${rows}u + row] = v * params.outScale;
  }
}
`;
  } else if (quant.mode === "per-token-int8") {
    code = /* wgsl */ `${header}
var<workgroup> part: array<i32, ${64 * LINEAR_TOKENS}>;
${wordDot}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t0 = wid.y * TT;
  if (t0 >= step.tokens) { return; }
  let lane = lid % 16u;
  let row = wid.x * ${LINEAR_ROWS}u + lid / 16u;
  var acc = array<i32, ${LINEAR_TOKENS}>();
  if (row < ${rows}u) {
    for (var w = lane; w < ${words}u; w += 16u) {
      let wv = wq[row * ${words}u + w];
      for (var tt = 0u; tt < TT; tt++) {
        if (t0 + tt < step.tokens) {
          acc[tt] += wordDot(wv, (t0 + tt) * ${quant.qStride}u + qWord(w));
        }
      }
    }
  }
  for (var tt = 0u; tt < TT; tt++) { part[lid * TT + tt] = acc[tt]; }
  workgroupBarrier();
  if (lane == 0u && row < ${rows}u) {
    for (var tt = 0u; tt < TT; tt++) {
      let t = t0 + tt;
      if (t < step.tokens) {
        var dot = 0i;
        for (var l = 0u; l < 16u; l++) { dot += part[(lid + l) * TT + tt]; }
        dot -= qsum[t * ${quant.nbMax}u];
        let v = (f32(dot) / qscale[t * ${quant.nbMax}u]) * wscale[row];
        y[t * ${rows}u + row] = v * params.outScale;
      }
    }
  }
}
`;
  } else {
    code = /* wgsl */ `${header}
var<workgroup> part: array<f32, ${LINEAR_ROWS * nb * LINEAR_TOKENS}>;
${wordDot}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t0 = wid.y * TT;
  if (t0 >= step.tokens) { return; }
  let lane = lid % 16u;
  let sub = lid / 16u;
  let row = wid.x * ${LINEAR_ROWS}u + sub;
  if (row < ${rows}u) {
    for (var b = lane; b < ${nb}u; b += 16u) {
      var acc = array<i32, ${LINEAR_TOKENS}>();
      for (var w = 16u * b; w < 16u * b + 16u; w++) {
        let wv = wq[row * ${words}u + w];
        for (var tt = 0u; tt < TT; tt++) {
          if (t0 + tt < step.tokens) {
            acc[tt] += wordDot(wv, (t0 + tt) * ${quant.qStride}u + qWord(w));
          }
        }
      }
      let dw = wscale[row * ${nb}u + b];
      for (var tt = 0u; tt < TT; tt++) {
        let t = t0 + tt;
        if (t < step.tokens) {
          let sumi = acc[tt] - qsum[t * ${quant.nbMax}u + b];
          part[(sub * ${nb}u + b) * TT + tt] = f32(sumi) * (qscale[t * ${quant.nbMax}u + b] * dw);
        }
      }
    }
  }
  workgroupBarrier();
  if (lane == 0u && row < ${rows}u) {
    for (var tt = 0u; tt < TT; tt++) {
      let t = t0 + tt;
      if (t < step.tokens) {
        var sumf = 0.0;
        for (var b = 0u; b < ${nb}u; b++) { sumf += part[(sub * ${nb}u + b) * TT + tt]; }
        y[t * ${rows}u + row] = sumf * params.outScale;
      }
    }
  }
}
`;
  }
  return {
    code,
    workgroups: (tokens) => [rowGroups, Math.ceil(tokens / LINEAR_TOKENS)],
  };
}

/** Float weights as the head kernel reads them: f16 pairs in u32, or f32. */
export type FloatLayout = "f16" | "f32";

/**
 * The activation rows a float matmul reads, gathered once per step: the rows listed in `rowIdx`
 * (the head runs only on the rows that want logits) or every token's row, rounded to f16 and
 * packed in pairs when ggml would convert the activation to an F16 weight's dot type — rounded
 * once here rather than once per weight row.
 */
export function gatherRowsShader(cols: number, f16: boolean, rowsIndexed: boolean): string {
  const pairs = cols / 2;
  return /* wgsl */ `${STEP_STRUCT}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> rowIdx: array<u32>;
@group(0) @binding(2) var<storage, read_write> xa: array<${f16 ? "u32" : "vec2f"}>;
@group(0) @binding(3) var<uniform> step: Step;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let r = gid.y;
  let p = gid.x;
  if (r >= ${rowsIndexed ? "step.rows" : "step.tokens"} || p >= ${pairs}u) { return; }
  let src = ${rowsIndexed ? "rowIdx[r]" : "r"} * ${cols}u + 2u * p;
  xa[r * ${pairs}u + p] = ${f16 ? "packF16(x[src], x[src + 1u])" : "vec2f(x[src], x[src + 1u])"};
}
`;
}

/**
 * y = W x for float weights (the output head, or a float projection) on gathered activation rows
 * (gatherRowsShader), 4 rows × 16 lanes per workgroup, 4 tokens per thread.
 */
export function floatMatmulShader(options: {
  readonly rows: number;
  readonly cols: number;
  readonly layout: FloatLayout;
  /** The gathered rows are f16 pairs (F16 weights) rather than f32 pairs. */
  readonly f16Activations: boolean;
  /** The count of rows is the step's logits rows (the head), else its tokens. */
  readonly rowsIndexed: boolean;
  /** Row stride of y (the full vocabulary when the head is split in chunks). */
  readonly yStride: number;
}): { code: string; workgroups: (tokens: number) => [number, number] } {
  const { rows, cols, layout, f16Activations, rowsIndexed, yStride } = options;
  const rowGroups = Math.ceil(rows / LINEAR_ROWS);
  const pairs = cols / 2;
  const load =
    layout === "f16"
      ? `let wv = unpack2x16float(w[row * ${pairs}u + p]);`
      : `let wv = w[row * ${pairs}u + p];`;
  const code = /* wgsl */ `${STEP_STRUCT}
struct Params { rowOffset: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read> w: array<${layout === "f16" ? "u32" : "vec2f"}>;
@group(0) @binding(1) var<storage, read> xa: array<${f16Activations ? "u32" : "vec2f"}>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> step: Step;
@group(0) @binding(4) var<uniform> params: Params;
const TT = ${LINEAR_TOKENS}u;
var<workgroup> part: array<f32, ${64 * LINEAR_TOKENS}>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t0 = wid.y * TT;
  let n = ${rowsIndexed ? "step.rows" : "step.tokens"};
  if (t0 >= n) { return; }
  let lane = lid % 16u;
  let row = wid.x * ${LINEAR_ROWS}u + lid / 16u;
  var acc = array<f32, ${LINEAR_TOKENS}>();
  if (row < ${rows}u) {
    var xb = array<u32, ${LINEAR_TOKENS}>();
    for (var tt = 0u; tt < TT; tt++) { xb[tt] = min(t0 + tt, n - 1u) * ${pairs}u; }
    for (var p = lane; p < ${pairs}u; p += 16u) {
      ${load}
      for (var tt = 0u; tt < TT; tt++) {
        let xv = ${f16Activations ? "unpack2x16float(xa[xb[tt] + p])" : "xa[xb[tt] + p]"};
        acc[tt] += wv.x * xv.x + wv.y * xv.y;
      }
    }
  }
  for (var tt = 0u; tt < TT; tt++) { part[lid * TT + tt] = acc[tt]; }
  workgroupBarrier();
  if (lane == 0u && row < ${rows}u) {
    for (var tt = 0u; tt < TT; tt++) {
      let t = t0 + tt;
      if (t < n) {
        var s = 0.0;
        for (var l = 0u; l < 16u; l++) { s += part[(lid + l) * TT + tt]; }
        y[t * ${yStride}u + params.rowOffset + row] = s;
      }
    }
  }
}
`;
  return { code, workgroups: (tokens) => [rowGroups, Math.ceil(tokens / LINEAR_TOKENS)] };
}

/**
 * The embedding lookup from one chunk of a float table (the head's chunks when the embedding is
 * tied): each token whose id falls in the chunk's rows gets its row, dequantized (f16 → f32 is
 * exact, so the rows equal the reference's).
 */
export function embedShader(cols: number, layout: FloatLayout): string {
  const pairs = cols / 2;
  return /* wgsl */ `${STEP_STRUCT}
struct Params { rowOffset: u32, rows: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read> w: array<${layout === "f16" ? "u32" : "vec2f"}>;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> step: Step;
@group(0) @binding(4) var<uniform> params: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let t = gid.y;
  let p = gid.x;
  if (t >= step.tokens || p >= ${pairs}u) { return; }
  let token = tokens[t];
  if (token < params.rowOffset || token >= params.rowOffset + params.rows) { return; }
  let at = (token - params.rowOffset) * ${pairs}u + p;
  let v = ${layout === "f16" ? "unpack2x16float(w[at])" : "w[at]"};
  y[t * ${cols}u + 2u * p] = v.x;
  y[t * ${cols}u + 2u * p + 1u] = v.y;
}
`;
}

/** NeoX RoPE from a host-computed cos/sin table (ggml's rope cache, so angles match it). */
export function ropeShader(heads: number, headDim: number, nRot: number): string {
  const half = nRot / 2;
  return /* wgsl */ `${STEP_STRUCT}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> cs: array<f32>;
@group(0) @binding(3) var<storage, read> pos: array<u32>;
@group(0) @binding(4) var<uniform> step: Step;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let t = gid.y;
  if (t >= step.tokens || gid.x >= ${heads * headDim}u) { return; }
  let h = gid.x / ${headDim}u;
  let i = gid.x % ${headDim}u;
  let o = t * ${heads * headDim}u + h * ${headDim}u;
  let p = pos[t];
  if (i < ${half}u) {
    let c = cs[(p * ${half}u + i) * 2u];
    let s = cs[(p * ${half}u + i) * 2u + 1u];
    y[o + i] = x[o + i] * c - x[o + i + ${half}u] * s;
  } else if (i < ${nRot}u) {
    let j = i - ${half}u;
    let c = cs[(p * ${half}u + j) * 2u];
    let s = cs[(p * ${half}u + j) * 2u + 1u];
    y[o + i] = x[o + j] * s + x[o + i] * c;
  } else {
    y[o + i] = x[o + i];
  }
}
`;
}

/** Tokens of a KV page. */
export const KV_PAGE = 16;

/** Stores the step's keys and values (f16) in their sequences' KV pages. */
export function kvStoreShader(kvWidth: number): string {
  return /* wgsl */ `${STEP_STRUCT}
@group(0) @binding(0) var<storage, read> k: array<f32>;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read_write> kc: array<u32>;
@group(0) @binding(3) var<storage, read_write> vc: array<u32>;
@group(0) @binding(4) var<storage, read> slot: array<u32>;
@group(0) @binding(5) var<uniform> step: Step;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let t = gid.y;
  let p = gid.x;
  if (t >= step.tokens || p >= ${kvWidth / 2}u) { return; }
  let src = t * ${kvWidth}u + 2u * p;
  let dst = slot[t] * ${kvWidth / 2}u + p;
  kc[dst] = packF16(k[src], k[src + 1u]);
  vc[dst] = packF16(v[src], v[src + 1u]);
}
`;
}

/**
 * Causal GQA attention, one workgroup per (head, token), the token's cached positions in chunks
 * of the workgroup size: a first pass finds the softmax max and denominator (online, across
 * chunks), a second forms each probability, rounds it to f16 as llama.cpp's f16 V path does, and
 * accumulates P·V with one output dimension per thread. q is rounded to f16 like the K cache.
 */
export function attentionShader(options: {
  readonly nHead: number;
  readonly nHeadKv: number;
  readonly headDim: number;
  readonly maxPages: number;
}): { code: string; workgroupSize: number } {
  const { nHead, nHeadKv, headDim, maxPages } = options;
  const wg = headDim <= 64 ? 64 : headDim <= 128 ? 128 : 256;
  const group = nHead / nHeadKv;
  const halfW = (nHeadKv * headDim) / 2;
  const code = /* wgsl */ `${STEP_STRUCT}
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> kc: array<u32>;
@group(0) @binding(2) var<storage, read> vc: array<u32>;
@group(0) @binding(3) var<storage, read> pages: array<u32>;
@group(0) @binding(4) var<storage, read> seqRow: array<u32>;
@group(0) @binding(5) var<storage, read> pos: array<u32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
@group(0) @binding(7) var<uniform> step: Step;
${reducers(wg)}
var<workgroup> qs: array<f32, ${headDim}>;
var<workgroup> probs: array<f32, ${wg}>;
var<workgroup> slots: array<u32, ${wg}>;
const NEG = -3.0e38;
fn slotOf(table: u32, p: u32) -> u32 {
  return pages[table + p / ${KV_PAGE}u] * ${KV_PAGE}u + p % ${KV_PAGE}u;
}
fn score(table: u32, p: u32, kvh: u32) -> f32 {
  let kb = slotOf(table, p) * ${halfW}u + kvh * ${headDim / 2}u;
  var d = 0.0;
  for (var j = 0u; j < ${headDim / 2}u; j++) {
    let kv = unpack2x16float(kc[kb + j]);
    d += qs[2u * j] * kv.x + qs[2u * j + 1u] * kv.y;
  }
  return d * ${f(1 / Math.sqrt(headDim))};
}
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let t = wid.y;
  if (t >= step.tokens) { return; }
  let kvh = h / ${group}u;
  let len = pos[t] + 1u;
  let table = seqRow[t] * ${maxPages}u;
  let qo = t * ${nHead * headDim}u + h * ${headDim}u;
  if (lid < ${headDim}u) { qs[lid] = roundF16(q[qo + lid]); }
  workgroupBarrier();
  // Pass 1: the row's max and softmax denominator, online over chunks.
  var m = NEG;
  var l = 0.0;
  for (var c0 = 0u; c0 < len; c0 += ${wg}u) {
    let p = c0 + lid;
    var s = NEG;
    if (p < len) { s = score(table, p, kvh); }
    let mNew = max(m, reduceMaxF(lid, s));
    var e = 0.0;
    if (p < len) { e = exp(s - mNew); }
    l = l * exp(m - mNew) + reduceSumF(lid, e);
    m = mNew;
  }
  let inv = 1.0 / l;
  // Pass 2: probabilities rounded to f16 (llama.cpp's f16 V path), then P·V, one dim per thread.
  var acc = 0.0;
  for (var c0 = 0u; c0 < len; c0 += ${wg}u) {
    let p = c0 + lid;
    if (p < len) {
      slots[lid] = slotOf(table, p);
      probs[lid] = roundF16(exp(score(table, p, kvh) - m) * inv);
    }
    workgroupBarrier();
    if (lid < ${headDim}u) {
      let n = min(${wg}u, len - c0);
      for (var j = 0u; j < n; j++) {
        let vv = unpack2x16float(vc[slots[j] * ${halfW}u + kvh * ${headDim / 2}u + lid / 2u]);
        acc += probs[j] * select(vv.x, vv.y, (lid & 1u) == 1u);
      }
    }
    workgroupBarrier();
  }
  if (lid < ${headDim}u) { y[qo + lid] = acc; }
}
`;
  return { code, workgroupSize: wg };
}

/** out = a + b, or out = act(gate) ⊙ up, over the step's tokens × n values. */
export function elementwiseShader(kind: "add" | "relu2" | "silu", n: number): string {
  const expr =
    kind === "add"
      ? "a[i] + b[i]"
      : kind === "relu2"
        ? "select(0.0, a[i], a[i] > 0.0) * select(0.0, a[i], a[i] > 0.0) * b[i]"
        : "(a[i] / (1.0 + exp(-a[i]))) * b[i]";
  return /* wgsl */ `${STEP_STRUCT}
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> step: Step;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= step.tokens * ${n}u) { return; }
  y[i] = ${expr};
}
`;
}

/**
 * The k largest logits of each requested row (k = 1: the argmax), highest first, lower id first
 * on ties: k passes over the row, each finding the best entry ranked after the previous pick.
 */
export function topKShader(vocab: number, kMax: number, subgroups = false): string {
  // The best of the workgroup: a tree through workgroup memory, or (subgroups) subgroupMax and
  // subgroupMin per subgroup, then one partial per subgroup (its index from an atomic counter).
  const reduce = subgroups
    ? /* wgsl */ `
    let top = subgroupMax(select(NEG, best, bestI != NONE));
    let topI = subgroupMin(select(NONE, bestI, bestI != NONE && best == top));
    if (sl == 0u) {
      bv[k] = top;
      bi[k] = topI;
    }
    workgroupBarrier();
    if (lid == 0u) {
      let n = atomicLoad(&subgroupCount);
      for (var j = 1u; j < n; j++) {
        if (before(bv[j], bi[j], bv[0], bi[0])) {
          bv[0] = bv[j];
          bi[0] = bi[j];
        }
      }
    }
    workgroupBarrier();`
    : /* wgsl */ `
    bv[lid] = best;
    bi[lid] = bestI;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
      if (lid < s && before(bv[lid + s], bi[lid + s], bv[lid], bi[lid])) {
        bv[lid] = bv[lid + s];
        bi[lid] = bi[lid + s];
      }
      workgroupBarrier();
    }`;
  return /* wgsl */ `${subgroups ? "enable subgroups;\n" : ""}${STEP_STRUCT}
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> kOf: array<u32>;
@group(0) @binding(2) var<storage, read_write> ids: array<i32>;
@group(0) @binding(3) var<storage, read_write> vals: array<f32>;
@group(0) @binding(4) var<uniform> step: Step;
var<workgroup> bv: array<f32, 256>;
var<workgroup> bi: array<u32, 256>;
var<workgroup> subgroupCount: atomic<u32>;
const NONE = 0xffffffffu;
const NEG = -3.0e38;
// "(v, i) ranks before (w, j)": a higher value, or the same value and a lower id.
fn before(v: f32, i: u32, w: f32, j: u32) -> bool {
  if (j == NONE) { return i != NONE; }
  if (i == NONE) { return false; }
  return v > w || (v == w && i < j);
}
@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_index) lid: u32,
  ${subgroups ? "@builtin(subgroup_invocation_id) sl: u32," : ""}
) {
  let r = wid.x;
  if (r >= step.rows) { return; }
  ${subgroups ? "var k = 0u;\n  if (sl == 0u) { k = atomicAdd(&subgroupCount, 1u); }\n  k = subgroupBroadcastFirst(k);" : ""}
  let kWanted = kOf[r];
  let base = r * ${vocab}u;
  var pv = 0.0;
  var pi = NONE;
  for (var pick = 0u; pick < kWanted; pick++) {
    var best = 0.0;
    var bestI = NONE;
    for (var i = lid; i < ${vocab}u; i += 256u) {
      let v = logits[base + i];
      // Only entries ranked after the previous pick (none yet: all entries); NaN never ranks.
      if (v != v) { continue; }
      if (pi != NONE && !before(pv, pi, v, i)) { continue; }
      if (before(v, i, best, bestI)) { best = v; bestI = i; }
    }
${reduce}
    pv = bv[0];
    pi = bi[0];
    workgroupBarrier();
    if (lid == 0u) {
      ids[r * ${kMax}u + pick] = select(i32(pi), -1, pi == NONE);
      vals[r * ${kMax}u + pick] = pv;
    }
  }
}
`;
}
