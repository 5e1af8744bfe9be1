// Every path's attention scores against the TypeScript reference arithmetic, bit for bit: each
// score is Σ_i q[i]·k[i][j] summed in i order in f32 (products of f16 values are exact), for one
// to five query heads sharing a KV head (the kernels take up to four per pass over the keys) and
// every length from 1 to 70, so each block width and every partial tail of every path is reached.
import { f16ToF32, f32ToF16, roundToF16 } from "@bitnet-ts/quantization";
import { describe, expect, it } from "vitest";
import { rng } from "../test/numbers";
import { ALL_KERNEL_PATHS, pathSkipReason } from "../test/paths";
import { loadBinding } from "./loader";

const fround = Math.fround;

/** The reference's scores: per head and position, Σ_i fround(q·k) accumulated in f32, i in order. */
function referenceScores(
  q: Float32Array,
  heads: number,
  keys: Uint16Array,
  stride: number,
  len: number,
): Float32Array {
  const hd = q.length / heads;
  const out = new Float32Array(heads * len);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < len; j++) {
      let s = 0;
      for (let i = 0; i < hd; i++) {
        s = fround(s + fround(q[h * hd + i]! * f16ToF32(keys[i * stride + j]!)));
      }
      out[h * len + j] = s;
    }
  }
  return out;
}

describe("attention scores equal the reference arithmetic bit for bit", () => {
  // The amx path runs the avx512vnni path's attention (its tiles are for projections only).
  for (const path of ALL_KERNEL_PATHS.filter((p) => p !== "amx")) {
    const skip = pathSkipReason(path);
    const suffix = skip ? ` (skipped: ${skip})` : "";
    it.skipIf(skip !== undefined)(`${path}: 1-5 heads, lengths 1-70${suffix}`, () => {
      const binding = loadBinding();
      const random = rng(0xa77e ^ path.length);
      for (const hd of [64, 128]) {
        for (let heads = 1; heads <= 5; heads++) {
          const q = new Float32Array(heads * hd).map(() => roundToF16((random() * 2 - 1) * 4));
          for (let len = 1; len <= 70; len++) {
            // Rows longer than len (a cache's capacity); positions past len hold values that
            // would change the sums if a kernel used them.
            const stride = len + Math.floor(random() * 40);
            const keys = new Uint16Array((hd - 1) * stride + len).map((_, n) =>
              n % stride < len ? f32ToF16((random() * 2 - 1) * 8) : 0x7bff,
            );
            const got = binding.attnScores(path, q, heads, keys, stride, len);
            const want = referenceScores(q, heads, keys, stride, len);
            for (let n = 0; n < want.length; n++) {
              if (!Object.is(got[n], want[n])) {
                const where = `hd ${hd}, ${heads} heads, len ${len}: head ${Math.floor(n / len)}, position ${n % len}`;
                expect(got[n], where).toBe(want[n]);
              }
            }
          }
        }
      }
    });
  }
  it("refuses inconsistent shapes with a RangeError", () => {
    const binding = loadBinding();
    const path = binding.availablePaths()[0]!;
    const q = new Float32Array(2 * 64);
    const keys = new Uint16Array(64 * 10);
    expect(() => binding.attnScores(path, q, 2, keys, 10, 11)).toThrow(RangeError);
    expect(() => binding.attnScores(path, q, 3, keys, 10, 5)).toThrow(RangeError);
    expect(() => binding.attnScores(path, q, 2, keys.subarray(0, 100), 10, 5)).toThrow(RangeError);
  });
});

/**
 * The reference's softmax of one row of f32 scores (engine-core's attendOne, ggml numerics):
 * scaled in f32, the row maximum taken in order, exp in double rounded to f32, the sum in double
 * in position order, and each value times the f32 reciprocal of the sum.
 */
function referenceSoftmax(row: Float32Array, scale: number): Float32Array {
  const s = row.map((v) => fround(v * fround(scale)));
  let max = Number.NEGATIVE_INFINITY;
  for (const v of s) {
    max = Math.max(max, v);
  }
  const e = s.map((v) => fround(Math.exp(fround(v - max))));
  let sum = 0;
  for (const v of e) {
    sum += v;
  }
  const inv = fround(1 / sum);
  return e.map((v) => fround(v * inv));
}

describe("the attention softmax equals the reference arithmetic bit for bit", () => {
  for (const path of ALL_KERNEL_PATHS.filter((p) => p !== "amx")) {
    const skip = pathSkipReason(path);
    const suffix = skip ? ` (skipped: ${skip})` : "";
    it.skipIf(skip !== undefined)(
      `${path}: 1-10 rows, lengths 1-70 and 1,000, the maximum at every position${suffix}`,
      () => {
        const binding = loadBinding();
        const random = rng(0x50f7 ^ path.length);
        const scale = 1 / Math.sqrt(128);
        const check = (scores: Float32Array, rows: number, len: number, what: string) => {
          const got = binding.softmaxRows(path, scores, rows, len, scale);
          for (let r = 0; r < rows; r++) {
            const want = referenceSoftmax(scores.subarray(r * len, (r + 1) * len), scale);
            for (let j = 0; j < len; j++) {
              if (!Object.is(got[r * len + j], want[j])) {
                expect(got[r * len + j], `${what}: row ${r}, position ${j}`).toBe(want[j]);
              }
            }
          }
        };
        for (let rows = 1; rows <= 10; rows++) {
          for (const len of [...Array.from({ length: 70 }, (_, i) => i + 1), 1000]) {
            const scores = new Float32Array(rows * len).map(() => fround((random() * 2 - 1) * 60));
            check(scores, rows, len, `${rows} rows × ${len}`);
          }
        }
        // One clear maximum at each position of a row (each residue of the partial maxima), and
        // ties of it elsewhere.
        for (const len of [17, 40]) {
          for (let at = 0; at < len; at++) {
            const scores = new Float32Array(len).map(() => fround((random() * 2 - 1) * 30));
            scores[at] = 95;
            if (at % 3 === 0) {
              scores[(at + 9) % len] = 95;
            }
            check(scores, 1, len, `maximum at ${at} of ${len}`);
          }
        }
      },
    );
  }
  // A prompt's tokens scored together (the model's attention tiles): rows of different lengths,
  // eight at a time sharing their common positions, then each row's own.
  for (const path of ALL_KERNEL_PATHS.filter((p) => p !== "amx")) {
    const skip = pathSkipReason(path);
    const suffix = skip ? ` (skipped: ${skip})` : "";
    it.skipIf(skip !== undefined)(
      `${path}: rows of different lengths, each its own softmax, the slots past it untouched${suffix}`,
      () => {
        const binding = loadBinding();
        const random = rng(0x7a9e ^ path.length);
        const scale = 1 / Math.sqrt(128);
        for (const rows of [1, 4, 9, 16]) {
          for (const len of [3, 40, 700]) {
            const lengths = Int32Array.from({ length: rows }, (_, r) =>
              r % 4 === 3 ? len : 1 + Math.floor(random() * len),
            );
            const scores = new Float32Array(rows * len).map(() => fround((random() * 2 - 1) * 60));
            const got = binding.softmaxRows(path, scores, rows, len, scale, lengths);
            for (let r = 0; r < rows; r++) {
              const n = lengths[r]!;
              const want = referenceSoftmax(scores.subarray(r * len, r * len + n), scale);
              for (let j = 0; j < len; j++) {
                const expected = j < n ? want[j]! : scores[r * len + j]!;
                if (!Object.is(got[r * len + j], expected)) {
                  expect(
                    got[r * len + j],
                    `${rows} rows of ${len}: row ${r} (${n} long), position ${j}`,
                  ).toBe(expected);
                }
              }
            }
          }
        }
      },
    );
  }
  it("refuses inconsistent shapes with a RangeError", () => {
    const binding = loadBinding();
    const path = binding.availablePaths()[0]!;
    expect(() => binding.softmaxRows(path, new Float32Array(10), 3, 4, 1)).toThrow(RangeError);
    expect(() =>
      binding.softmaxRows(path, new Float32Array(8), 2, 4, 1, Int32Array.of(4, 5)),
    ).toThrow(RangeError);
    expect(() => binding.softmaxRows(path, new Float32Array(8), 2, 4, 1, Int32Array.of(4))).toThrow(
      TypeError,
    );
    expect(() => binding.softmaxRows(path, new Float32Array(0), 0, 4, 1)).toThrow(RangeError);
  });
});

/** The reference's attention output: per head and lane, Σ_j p·v accumulated in f32, j in order. */
function referenceValues(
  p: Float32Array,
  heads: number,
  values: Uint16Array,
  kvw: number,
  hd: number,
  len: number,
): Float32Array {
  const out = new Float32Array(heads * hd);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < hd; i++) {
      let a = 0;
      for (let j = 0; j < len; j++) {
        a = fround(a + fround(p[h * len + j]! * f16ToF32(values[j * kvw + i]!)));
      }
      out[h * hd + i] = a;
    }
  }
  return out;
}

describe("attention outputs equal the reference arithmetic bit for bit", () => {
  for (const path of ALL_KERNEL_PATHS.filter((p) => p !== "amx")) {
    const skip = pathSkipReason(path);
    const suffix = skip ? ` (skipped: ${skip})` : "";
    it.skipIf(skip !== undefined)(
      `${path}: 1-6 heads, head dims 64, 128, 80 and 72, lengths 1-40, 300 and 1000 (several position tiles)${suffix}`,
      () => {
        const binding = loadBinding();
        const random = rng(0x7a1e ^ path.length);
        // 80 and 72 leave tails after the 64- and 16-lane passes.
        for (const hd of [64, 128, 80, 72]) {
          for (let heads = 1; heads <= 6; heads++) {
            for (const len of [...Array.from({ length: 40 }, (_, i) => i + 1), 300, 1000]) {
              // Rows wider than hd (another head's values beside them) that must not be read.
              const kvw = hd + 16 * Math.floor(random() * 3);
              const values = new Uint16Array((len - 1) * kvw + hd).map((_, n) =>
                n % kvw < hd ? f32ToF16((random() * 2 - 1) * 8) : 0x7bff,
              );
              const p = new Float32Array(heads * len).map(() => roundToF16(random()));
              const got = binding.attnValues(path, p, heads, values, kvw, hd, len);
              const want = referenceValues(p, heads, values, kvw, hd, len);
              for (let n = 0; n < want.length; n++) {
                if (!Object.is(got[n], want[n])) {
                  const where = `hd ${hd}, ${heads} heads, len ${len}: head ${Math.floor(n / hd)}, lane ${n % hd}`;
                  expect(got[n], where).toBe(want[n]);
                }
              }
            }
          }
        }
      },
    );
  }
  // The model splits a batch's tokens (whose lengths differ) into a shared run of positions and
  // each token's own tail, continuing the sums: the two calls must give the one call's bits.
  for (const path of ALL_KERNEL_PATHS.filter((p) => p !== "amx")) {
    const skip = pathSkipReason(path);
    const suffix = skip ? ` (skipped: ${skip})` : "";
    it.skipIf(skip !== undefined)(
      `${path}: positions split in two calls, the second continuing the sums, give one call's bits${suffix}`,
      () => {
        const binding = loadBinding();
        const random = rng(0xca77 ^ path.length);
        for (const hd of [128, 72]) {
          for (const heads of [1, 3, 4, 8, 16]) {
            for (const len of [2, 33, 300, 1000]) {
              const kvw = hd;
              const values = new Uint16Array(len * kvw).map(() => f32ToF16((random() * 2 - 1) * 8));
              const p = new Float32Array(heads * len).map(() => roundToF16(random()));
              const whole = binding.attnValues(path, p, heads, values, kvw, hd, len);
              for (const m of [1, 1 + Math.floor(random() * (len - 1)), len - 1]) {
                if (m < 1 || m >= len) {
                  continue;
                }
                const rows = (from: number, to: number) => {
                  const part = new Float32Array(heads * (to - from));
                  for (let h = 0; h < heads; h++) {
                    part.set(p.subarray(h * len + from, h * len + to), h * (to - from));
                  }
                  return part;
                };
                const first = binding.attnValues(
                  path,
                  rows(0, m),
                  heads,
                  values.subarray(0, m * kvw),
                  kvw,
                  hd,
                  m,
                );
                const rest = values.subarray(m * kvw);
                const got = binding.attnValues(
                  path,
                  rows(m, len),
                  heads,
                  rest,
                  kvw,
                  hd,
                  len - m,
                  first,
                );
                for (let n = 0; n < whole.length; n++) {
                  if (!Object.is(got[n], whole[n])) {
                    expect(
                      got[n],
                      `hd ${hd}, ${heads} heads, len ${len} split at ${m}: lane ${n}`,
                    ).toBe(whole[n]);
                  }
                }
              }
            }
          }
        }
      },
    );
  }
  it("refuses inconsistent shapes with a RangeError", () => {
    const binding = loadBinding();
    const path = binding.availablePaths()[0]!;
    const values = new Uint16Array(64 * 10);
    expect(() => binding.attnValues(path, new Float32Array(2 * 10), 2, values, 64, 65, 10)).toThrow(
      RangeError,
    );
    expect(() => binding.attnValues(path, new Float32Array(2 * 10), 3, values, 64, 64, 10)).toThrow(
      RangeError,
    );
    expect(() => binding.attnValues(path, new Float32Array(2 * 11), 2, values, 64, 64, 11)).toThrow(
      RangeError,
    );
    expect(() =>
      binding.attnValues(
        path,
        new Float32Array(2 * 10),
        2,
        values,
        64,
        64,
        10,
        new Float32Array(64),
      ),
    ).toThrow(TypeError);
  });
});
