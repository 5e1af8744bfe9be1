// Every path's ternary projections (I2_S and TQ2_0) against the TypeScript reference arithmetic,
// bit for bit, at token counts that reach each multi-token variant of the kernels (sixteen,
// eight and four tokens per pass, and the single-token remainder) and at widths with a 128-column
// I2_S tail. The rows include the extremes of the integer sums (all +1, all −1 against
// activations at ±127), where a kernel that sums in int16 too long would overflow.
import {
  packI2S,
  packTQ2_0,
  quantizeActivationsI8,
  quantizeQ8_K,
  unpackTQ2_0,
} from "@bitnet-ts/quantization";
import { describe, expect, it } from "vitest";
import { rng } from "../test/numbers";
import { ALL_KERNEL_PATHS, pathSkipReason } from "../test/paths";
import { loadBinding } from "./loader";

const fround = Math.fround;

/** Ternary weights: row 0 all +1, row 1 all −1, row 2 all 0, the rest random. */
function ternary(random: () => number, rows: number, cols: number): Int8Array {
  const v = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      v[r * cols + c] = r === 0 ? 1 : r === 1 ? -1 : r === 2 ? 0 : Math.floor(random() * 3) - 1;
    }
  }
  return v;
}

/** Activations: token 0 all equal (every q = 127), the rest of mixed magnitude and sign. */
function activations(random: () => number, T: number, cols: number): Float32Array {
  const x = new Float32Array(T * cols);
  x.fill(0.75, 0, cols);
  for (let i = cols; i < x.length; i++) {
    x[i] = (random() * 2 - 1) * 10 ** Math.floor(random() * 3 - 1);
  }
  return x;
}

function dot(values: Int8Array, base: number, q: Int8Array, start: number, end: number): number {
  let sum = 0;
  for (let c = start; c < end; c++) {
    sum += values[base + c]! * q[c]!;
  }
  return sum;
}

/** bitnet.cpp's I2_S projection: (Σ w·q) / s_a · scale, in f32. */
function i2sReference(
  values: Int8Array,
  scale: number,
  rows: number,
  cols: number,
  x: Float32Array,
) {
  const T = x.length / cols;
  const out = new Float32Array(T * rows);
  const q = new Int8Array(cols);
  for (let t = 0; t < T; t++) {
    const { scale: sa } = quantizeActivationsI8(x.subarray(t * cols, (t + 1) * cols), q);
    for (let r = 0; r < rows; r++) {
      out[t * rows + r] = fround(fround(dot(values, r * cols, q, 0, cols) / sa) * scale);
    }
  }
  return out;
}

/** ggml_vec_dot_tq2_0_q8_K: Σ_b (float)(Σ w·q) · (d_x · d_w), in block order, in f32. */
function tq2Reference(weights: Uint8Array, rows: number, cols: number, x: Float32Array) {
  const { values, scales } = unpackTQ2_0(weights, rows * cols);
  const T = x.length / cols;
  const nb = cols / 256;
  const out = new Float32Array(T * rows);
  for (let t = 0; t < T; t++) {
    const xq = quantizeQ8_K(x.subarray(t * cols, (t + 1) * cols));
    for (let r = 0; r < rows; r++) {
      let sumf = 0;
      for (let b = 0; b < nb; b++) {
        const sumi = dot(values, r * cols, xq.qs, 256 * b, 256 * b + 256);
        sumf = fround(sumf + fround(sumi * fround(xq.d[b]! * scales[r * nb + b]!)));
      }
      out[t * rows + r] = sumf;
    }
  }
  return out;
}

function expectSameBits(got: Float32Array, want: Float32Array, rows: number, label: string) {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    if (!Object.is(got[i], want[i])) {
      const t = Math.floor(i / rows);
      expect(got[i], `${label}: token ${t}, row ${i % rows}`).toBe(want[i]);
    }
  }
}

// [rows, cols, tokens]: tokens 1 (decode), 3, 4, 8, 9, 16, 20 (16 + 4), 37 (16 + 16 + 4 + 1).
// Decode also runs eight rows per pass (21 = 8 + 8 + 5), and TQ2_0 rows wider than its 64-block
// parking space (16640 columns) one by one. I2_S decode takes blocks two (VNNI: 128 columns each,
// AVX-512: 256) or eight, then four, then one at a time (AVX2, rows in pairs), so some rows end
// in a partial pass: 896 and 1152 columns (7 and 9 blocks of 128; AVX-512: 3 and 4 of 256 plus a
// 128 tail) and 6912 (54; 27), and odd row counts leave one row to the one-row loop.
const I2S_SHAPES = [
  [5, 128, 1],
  [21, 2560, 1],
  [6, 896, 1],
  [11, 1152, 1],
  [7, 6912, 1],
  [13, 2560, 2],
  [70, 384, 3],
  [9, 2560, 4],
  [12, 640, 6],
  [10, 1152, 7],
  [130, 512, 8],
  [66, 640, 9],
  [33, 2560, 16],
  [24, 1792, 8],
  [70, 1024, 20],
  [17, 384, 37],
] as const;
const TQ2_SHAPES = [
  [5, 256, 1],
  [21, 2560, 1],
  [9, 16640, 1],
  [70, 512, 3],
  [9, 2560, 4],
  [10, 1024, 7],
  [12, 512, 11],
  [130, 512, 8],
  [66, 768, 12],
  [33, 2560, 16],
  [24, 1792, 8],
  [70, 1024, 20],
  [17, 768, 37],
] as const;

describe("ternary projections equal the reference arithmetic bit for bit", () => {
  for (const path of ALL_KERNEL_PATHS.filter((p) => p !== "amx")) {
    const skip = pathSkipReason(path);
    const suffix = skip ? ` (skipped: ${skip})` : "";
    it.skipIf(skip !== undefined)(`${path}: I2_S${suffix}`, () => {
      const binding = loadBinding();
      const random = rng(0x1255 ^ path.length);
      for (const [rows, cols, T] of I2S_SHAPES) {
        const values = ternary(random, rows, cols);
        const scale = fround(0.5 + random());
        const x = activations(random, T, cols);
        const got = binding.ternaryGemm(path, "i2_s", packI2S(values, scale), rows, cols, x);
        expectSameBits(
          got,
          i2sReference(values, scale, rows, cols, x),
          rows,
          `${rows}×${cols}, T=${T}`,
        );
      }
    });
    // A mapped GGUF file aligns tensors to 32 bytes: every other I2_S matrix starts halfway into
    // a cache line, which the AVX-512 decode loads as two halves. Other offsets run too.
    it.skipIf(skip !== undefined)(
      `${path}: I2_S weights 32 bytes (and 8) off a cache line${suffix}`,
      () => {
        const binding = loadBinding();
        const random = rng(0x3232 ^ path.length);
        for (const [rows, cols, T] of [
          [21, 2560, 1],
          [9, 2560, 4],
          [5, 384, 1],
          [5, 6912, 1],
        ] as const) {
          const values = ternary(random, rows, cols);
          const scale = fround(0.5 + random());
          const x = activations(random, T, cols);
          const want = i2sReference(values, scale, rows, cols, x);
          for (const offset of [0, 32, 8]) {
            const got = binding.ternaryGemm(
              path,
              "i2_s",
              packI2S(values, scale),
              rows,
              cols,
              x,
              offset,
            );
            expectSameBits(got, want, rows, `${rows}×${cols}, T=${T}, weights at 64k + ${offset}`);
          }
        }
      },
    );
    it.skipIf(skip !== undefined)(`${path}: TQ2_0${suffix}`, () => {
      const binding = loadBinding();
      const random = rng(0x7420 ^ path.length);
      for (const [rows, cols, T] of TQ2_SHAPES) {
        const scales = new Float32Array((rows * cols) / 256).map(() => 0.01 + random());
        const weights = packTQ2_0(ternary(random, rows, cols), scales);
        const x = activations(random, T, cols);
        const got = binding.ternaryGemm(path, "tq2_0", weights, rows, cols, x);
        expectSameBits(got, tq2Reference(weights, rows, cols, x), rows, `${rows}×${cols}, T=${T}`);
      }
    });
  }

  it("rejects a path this CPU lacks, an unknown format and sizes that do not fit", () => {
    const binding = loadBinding();
    const x = new Float32Array(256);
    const i2s = packI2S(new Int8Array(256), 1);
    expect(binding.ternaryGemm("scalar", "i2_s", i2s, 1, 256, x)).toHaveLength(1);
    expect(() => binding.ternaryGemm("scalar", "i2_s", i2s.subarray(1), 1, 256, x)).toThrow(
      RangeError,
    );
    expect(() => binding.ternaryGemm("scalar", "i2_s", i2s, 1, 200, x)).toThrow(RangeError);
    expect(() => binding.ternaryGemm("scalar", "i2_s", i2s, 1, 256, x.subarray(1))).toThrow(
      RangeError,
    );
    expect(() =>
      binding.ternaryGemm("scalar", "q4_0" as "i2_s", new Uint8Array(66), 1, 256, x),
    ).toThrow(RangeError);
    expect(() => binding.ternaryGemm("scalar", "tq2_0", new Uint8Array(65), 1, 256, x)).toThrow(
      RangeError,
    );
    expect(() => binding.ternaryGemm("sve2", "tq2_0", new Uint8Array(66), 1, 256, x)).toThrow(
      /not available/,
    );
    for (const offset of [-1, 64, 1.5]) {
      expect(() => binding.ternaryGemm("scalar", "i2_s", i2s, 1, 256, x, offset)).toThrow(
        /weightOffset/,
      );
    }
  });
});
