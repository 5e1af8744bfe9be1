/**
 * The I2_S linear against the reference arithmetic (bitnet.cpp's per-token int8 quantization,
 * exact integer dot products, fround(fround(dot / s) · scale)): bit for bit. "host" runs the
 * kernel's own per-chunk functions and lane split on the CPU, so the indexing and rounding the
 * GPU runs are checked on every machine; "device" runs on the GPU and is skipped, with the
 * reason, where there is none.
 */
import * as fs from "node:fs";
import { packI2S, quantizeActivationsI8 } from "@bitnet-ts/quantization";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { findNvcc } from "../scripts/nvcc.mjs";
import { addonFiles, buildProblem, CudaKernels, cudaAvailability } from "./index";

const nvccPresent = findNvcc().nvcc !== undefined;
const built = fs.existsSync(addonFiles().addon);
const availability = cudaAvailability();
const noAddon = built
  ? false
  : `the CUDA addon is not built here (${buildProblem() ?? "no record"})`;
const noDevice = availability.available ? false : availability.reason;
const nvccMissing = nvccPresent ? false : (findNvcc().reason ?? "no nvcc");
const nvccFound = nvccPresent ? "nvcc is installed here" : false;

/** The test's title, naming the reason where it is skipped. */
function titled(title: string, skip: string | false): string {
  return skip === false ? title : `${title} (skipped: ${skip})`;
}

/** A deterministic generator (mulberry32), so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Case {
  rows: number;
  cols: number;
  tokens: number;
  values: Int8Array;
  scale: number;
  x: Float32Array;
}

function makeCase(rows: number, cols: number, tokens: number, seed: number): Case {
  const r = rng(seed);
  const values = new Int8Array(rows * cols);
  for (let i = 0; i < values.length; i++) {
    values[i] = Math.floor(r() * 3) - 1;
  }
  const x = new Float32Array(tokens * cols);
  for (let i = 0; i < x.length; i++) {
    // Mostly small activations and a few outliers, as after an RMSNorm.
    x[i] = (r() - 0.5) * (r() < 0.02 ? 40 : 2);
  }
  if (tokens > 1) {
    x.fill(0, cols, 2 * cols); // an all-zero token: the 1e-5 floor of the scale
  }
  return { rows, cols, tokens, values, scale: Math.fround(0.25 + r()), x };
}

/** The reference: per-token int8 (bitnet.cpp), exact dots, then the two f32 roundings. */
function reference(c: Case): { y: Float32Array; q: Int8Array; scales: number[]; sums: number[] } {
  const y = new Float32Array(c.tokens * c.rows);
  const q = new Int8Array(c.tokens * c.cols);
  const scales: number[] = [];
  const sums: number[] = [];
  for (let t = 0; t < c.tokens; t++) {
    const qt = q.subarray(t * c.cols, (t + 1) * c.cols);
    const { scale: s, sum } = quantizeActivationsI8(c.x.subarray(t * c.cols, (t + 1) * c.cols), qt);
    scales.push(s);
    sums.push(sum);
    for (let r = 0; r < c.rows; r++) {
      let dot = 0;
      for (let k = 0; k < c.cols; k++) {
        dot += c.values[r * c.cols + k]! * qt[k]!;
      }
      y[t * c.rows + r] = Math.fround(Math.fround(dot / s) * c.scale);
    }
  }
  return { y, q, scales, sums };
}

function run(kernels: CudaKernels, c: Case, where: "host" | "device") {
  const packed = packI2S(c.values, c.scale);
  return kernels.i2sLinear(
    {
      codes: packed.subarray(0, (c.rows * c.cols) / 4),
      rows: c.rows,
      cols: c.cols,
      scale: c.scale,
      x: c.x,
      tokens: c.tokens,
    },
    where,
  );
}

function expectExact(c: Case, out: ReturnType<typeof run>): void {
  const ref = reference(c);
  expect(Array.from(out.actScale)).toEqual(ref.scales.map(Math.fround));
  expect(Array.from(out.actSum)).toEqual(ref.sums);
  expect(Buffer.from(out.q.buffer).equals(Buffer.from(ref.q.buffer))).toBe(true);
  for (let i = 0; i < ref.y.length; i++) {
    if (!Object.is(out.y[i], ref.y[i])) {
      throw new Error(
        `output ${i} (token ${Math.floor(i / c.rows)}, row ${i % c.rows}): ${out.y[i]} ≠ ${ref.y[i]}`,
      );
    }
  }
}

// The 2B-4T widths (2560, 6912: 40 and 108 16-byte chunks per row, so lanes get unequal shares),
// one block, and widths that leave a half block at the end of a row.
const SHAPES: readonly [number, number, number][] = [
  [5, 128, 1],
  [7, 384, 3],
  [33, 2560, 1],
  [9, 6912, 2],
  [4, 2560, 9], // two passes of the multi-token kernel (5 + 4)
  [3, 640, 17], // from 16 tokens on: the tensor-core tiles
  [70, 384, 65], // tiles cut short in both rows and tokens
  [128, 256, 64],
];

describe("the CUDA addon build", () => {
  it.skipIf(nvccMissing !== false)(
    titled("compiles wherever nvcc is present (a compile error fails here)", nvccMissing),
    () => {
      expect(buildProblem()).toBeUndefined();
      expect(built).toBe(true);
    },
  );

  it.skipIf(nvccFound !== false)(
    titled("records why it was not built where nvcc is missing", nvccFound),
    () => {
      expect(buildProblem()).toContain(findNvcc().reason);
      // The host twins are built anyway (by the C++ compiler), so the arithmetic is tested here.
      const s = new CudaKernels().status();
      expect(s.deviceCode).toBe(false);
      expect(s.error).toContain(findNvcc().reason);
      expect(cudaAvailability()).toMatchObject({ available: false, addonLoaded: true });
    },
  );

  it.skipIf(noAddon !== false)(
    titled("reports the driver's reason instead of throwing where there is no GPU", noAddon),
    () => {
      const s = new CudaKernels().status();
      expect(s.runtimeVersion).toBeGreaterThanOrEqual(s.deviceCode ? 12000 : 0);
      if (s.deviceCount === 0) {
        expect(s.error).toMatch(/cuda/i);
        expect(() => new CudaKernels().requireDevice()).toThrow(/could not use a CUDA GPU/);
      } else {
        expect(s.devices[0]!.name.length).toBeGreaterThan(0);
      }
    },
  );
});

describe("I2_S linear, the kernels' arithmetic on the CPU (host)", () => {
  for (const [rows, cols, tokens] of SHAPES) {
    it.skipIf(noAddon !== false)(
      titled(`${rows}×${cols}, ${tokens} token(s): bit for bit`, noAddon),
      () => {
        const c = makeCase(rows, cols, tokens, rows * 7919 + cols + tokens);
        expectExact(c, run(new CudaKernels(), c, "host"));
      },
    );
  }

  it.skipIf(noAddon !== false)(
    titled("any shape and values: bit for bit (property)", noAddon),
    () => {
      const kernels = new CudaKernels();
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 6 }),
          fc.integer({ min: 1, max: 24 }),
          fc.oneof(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 16, max: 80 })),
          fc.integer(),
          (rows, blocks, tokens, seed) => {
            const c = makeCase(rows, blocks * 128, tokens, seed);
            expectExact(c, run(kernels, c, "host"));
          },
        ),
        { numRuns: Number(process.env["BITNET_FUZZ_RUNS"] ?? 100) },
      );
    },
  );

  it.skipIf(noAddon !== false)(titled("rejects bad shapes with a clear error", noAddon), () => {
    const kernels = new CudaKernels();
    const x = new Float32Array(100);
    expect(() =>
      kernels.i2sLinear(
        { codes: new Uint8Array(25), rows: 1, cols: 100, scale: 1, x, tokens: 1 },
        "host",
      ),
    ).toThrow(/multiple of 128/);
    expect(() =>
      kernels.i2sLinear(
        {
          codes: new Uint8Array(31),
          rows: 1,
          cols: 128,
          scale: 1,
          x: new Float32Array(128),
          tokens: 1,
        },
        "host",
      ),
    ).toThrow(/codes must hold 32 elements/);
  });
});

describe("I2_S linear on the GPU (device)", () => {
  for (const [rows, cols, tokens] of SHAPES) {
    it.skipIf(noDevice !== false)(
      titled(`${rows}×${cols}, ${tokens} token(s): bit for bit`, noDevice),
      () => {
        const c = makeCase(rows, cols, tokens, rows * 7919 + cols + tokens);
        expectExact(c, run(new CudaKernels(), c, "device"));
      },
    );
  }
});

describe("f16 linear on the GPU (device)", () => {
  it.skipIf(noDevice !== false)(
    titled("agrees with an f64 sum of the same products within f32 summation error", noDevice),
    () => {
      const r = rng(5);
      const rows = 37;
      const cols = 2560;
      const tokens = 2;
      const w = new Uint16Array(rows * cols);
      const wf = new Float64Array(rows * cols);
      for (let i = 0; i < w.length; i++) {
        // f16 values in ±2 from their bits: sign, exponent 13..15, mantissa.
        const bits =
          (r() < 0.5 ? 0x8000 : 0) | ((13 + Math.floor(r() * 3)) << 10) | Math.floor(r() * 1024);
        w[i] = bits;
        wf[i] =
          (bits & 0x8000 ? -1 : 1) * 2 ** (((bits >> 10) & 31) - 15) * (1 + (bits & 1023) / 1024);
      }
      const x = new Float32Array(tokens * cols).map(() => r() - 0.5);
      const y = new CudaKernels().f16Linear(w, rows, cols, x, tokens);
      for (let t = 0; t < tokens; t++) {
        for (let row = 0; row < rows; row++) {
          let exact = 0;
          let magnitude = 0;
          for (let k = 0; k < cols; k++) {
            exact += wf[row * cols + k]! * x[t * cols + k]!;
            magnitude += Math.abs(wf[row * cols + k]! * x[t * cols + k]!);
          }
          expect(Math.abs(y[t * rows + row]! - exact)).toBeLessThanOrEqual(magnitude * 1e-6);
        }
      }
    },
  );
});
