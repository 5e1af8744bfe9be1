/**
 * The top-k a step selects on the GPU (native/top_k.cuh) against engine-core's topKRows, which
 * defines the ranking: higher value first, equal values lower id first, NaN after every number.
 * "host" runs the kernel's selection (rank keys, radix passes, ties in id order, rank sort) on
 * the CPU on every machine; "device" runs the kernel and is skipped, with the reason, where
 * there is no GPU.
 */
import * as fs from "node:fs";
import { topKRows } from "@bitnet-ts/engine-core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { addonFiles, buildProblem, CudaKernels, cudaAvailability } from "./index";

const built = fs.existsSync(addonFiles().addon);
const noAddon = built
  ? false
  : `the CUDA addon is not built here (${buildProblem() ?? "no record"})`;
const availability = cudaAvailability();
const noDevice = noAddon !== false ? noAddon : availability.available ? false : availability.reason;

function titled(title: string, skip: string | false): string {
  return skip === false ? title : `${title} (skipped: ${skip})`;
}

/** Rows drawn from few distinct values (many ties), with NaN, ±0 and ±Infinity mixed in. */
const rowsArbitrary = fc
  .record({
    vocab: fc.integer({ min: 1, max: 700 }),
    rows: fc.integer({ min: 1, max: 3 }),
    seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    distinct: fc.integer({ min: 1, max: 2000 }),
    special: fc.double({ min: 0, max: 0.5, noNaN: true }),
  })
  .map(({ vocab, rows, seed, distinct, special }) => {
    let a = seed >>> 0;
    const next = () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = Math.imul(a ^ (a >>> 15), a | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const specials = [Number.NaN, 0, -0, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];
    const logits = new Float32Array(rows * vocab);
    for (let i = 0; i < logits.length; i++) {
      logits[i] =
        next() < special
          ? specials[Math.floor(next() * specials.length)]!
          : (Math.floor(next() * distinct) - distinct / 2) / 7;
    }
    return { vocab, rows, logits };
  });

function expectSameTop(
  got: { ids: Int32Array; values: Float32Array },
  logits: Float32Array,
  rows: number,
  vocab: number,
  k: number,
): void {
  const expected = topKRows(logits, rows, vocab, k);
  expect(Array.from(got.ids)).toEqual(Array.from(expected.ids));
  // Values by their bits: NaN equals NaN, and −0 stays −0.
  expect(Array.from(new Uint32Array(got.values.buffer))).toEqual(
    Array.from(new Uint32Array(expected.logits.buffer, expected.logits.byteOffset, rows * k)),
  );
}

function checkAll(kernels: CudaKernels, where: "host" | "device", runs: number): void {
  fc.assert(
    fc.property(rowsArbitrary, fc.nat(), ({ vocab, rows, logits }, kSeed) => {
      const limit = Math.min(vocab, kernels.maxDeviceTopK);
      for (const k of new Set([1, Math.min(2, limit), 1 + (kSeed % limit), limit])) {
        expectSameTop(kernels.topK(logits, rows, vocab, k, where), logits, rows, vocab, k);
      }
    }),
    { numRuns: runs, seed: 20261206 },
  );
}

describe("top-k selection", () => {
  it.skipIf(noAddon !== false)(
    titled("the host twin ranks as engine-core's topKRows (ties, NaN, ±0, ±Infinity)", noAddon),
    () => {
      checkAll(new CudaKernels(), "host", 300);
    },
  );

  it.skipIf(noAddon !== false)(
    titled("the host twin on a 128k-entry row: ties at the threshold, all equal, all NaN", noAddon),
    () => {
      const kernels = new CudaKernels();
      const vocab = 128256;
      const cases: Float32Array[] = [];
      // Distinct values with the k-th one repeated across the row (the tie scan).
      const spread = new Float32Array(vocab);
      for (let i = 0; i < vocab; i++) {
        spread[i] = ((i * 7919) % 1000) / 10;
      }
      cases.push(spread);
      cases.push(new Float32Array(vocab).fill(3));
      cases.push(new Float32Array(vocab).fill(Number.NaN));
      const ascending = new Float32Array(vocab);
      for (let i = 0; i < vocab; i++) {
        ascending[i] = i;
      }
      cases.push(ascending);
      for (const logits of cases) {
        for (const k of [1, 40, 256]) {
          expectSameTop(kernels.topK(logits, 1, vocab, k, "host"), logits, 1, vocab, k);
        }
      }
    },
  );

  it.skipIf(noAddon !== false)(titled("refuses a k it cannot select", noAddon), () => {
    const kernels = new CudaKernels();
    const logits = new Float32Array(8);
    expect(() => kernels.topK(logits, 2, 4, 5, "host")).toThrow(RangeError);
    expect(() => kernels.topK(logits, 2, 4, 0, "host")).toThrow(RangeError);
    expect(() => kernels.topK(logits, 3, 4, 1, "host")).toThrow(RangeError);
    expect(() =>
      kernels.topK(new Float32Array(1000), 1, 1000, kernels.maxDeviceTopK + 1, "host"),
    ).toThrow(RangeError);
  });

  it.skipIf(noDevice !== false)(
    titled("the GPU kernel ranks as engine-core's topKRows", noDevice),
    () => {
      checkAll(new CudaKernels(), "device", 200);
    },
  );
});
