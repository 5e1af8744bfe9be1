// Every path's activation quantizers (per-row int8 for I2_S, Q8_K blocks for TQ2_0) against the
// scalar ones, bit for bit, on seeded random rows that include what real activations rarely
// hold: NaN, ±Infinity, all-zero blocks, subnormals and exact rounding ties. The scalar
// quantizers match the TypeScript reference (the op-by-op suites); the SIMD ones round and clamp
// in vector lanes, where NaN and infinity handling is easy to get wrong.
import { describe, expect, it } from "vitest";
import { rng } from "../test/numbers";
import { ALL_KERNEL_PATHS, pathSkipReason } from "../test/paths";
import { loadBinding } from "./loader";

type Shape = "plain" | "tiny" | "ties" | "nan" | "infinity" | "zeros";
const SHAPES: readonly Shape[] = ["plain", "tiny", "ties", "nan", "infinity", "zeros"];

function row(random: () => number, n: number, shape: Shape): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = random() * 2 - 1;
    x[i] =
      shape === "tiny"
        ? u * 1e-39 // subnormal
        : shape === "ties"
          ? Math.round(u * 254) / 2 // many products land on .5
          : u * 10 ** Math.floor(random() * 8 - 3);
    if (shape === "nan" && random() < 0.02) {
      x[i] = Number.NaN;
    }
    if (shape === "infinity" && random() < 0.01) {
      x[i] = random() < 0.5 ? Infinity : -Infinity;
    }
    if (shape === "zeros" && random() < 0.7) {
      x[i] = 0;
    }
  }
  if (shape === "zeros") {
    x.fill(0, 0, 256); // one whole Q8_K block of zeros
  }
  return x;
}

const ROWS_PER_SHAPE = 40;

describe("activation quantizers match the scalar path bit for bit", () => {
  for (const path of ALL_KERNEL_PATHS.filter((p) => p !== "scalar" && p !== "amx")) {
    const skip = pathSkipReason(path);
    it.skipIf(skip !== undefined)(`${path}${skip ? ` (skipped: ${skip})` : ""}`, () => {
      const binding = loadBinding();
      const random = rng(0x5eed);
      let checked = 0;
      for (const shape of SHAPES) {
        for (let r = 0; r < ROWS_PER_SHAPE; r++) {
          // Row lengths of the 2B-4T projections' inputs and smaller ones, all multiples of 256.
          const x = row(random, 256 * (1 + Math.floor(random() * 12)), shape);
          for (const format of ["i8", "q8k"] as const) {
            const want = binding.quantizeActivations("scalar", format, x);
            const got = binding.quantizeActivations(path, format, x);
            const where = `${format}, ${shape} row ${r} (${x.length} values)`;
            expect(Buffer.from(got.q.buffer).equals(Buffer.from(want.q.buffer)), where).toBe(true);
            expect([...got.scales], where).toEqual([...want.scales]);
            expect([...got.sums], where).toEqual([...want.sums]);
            checked++;
          }
        }
      }
      expect(checked).toBe(SHAPES.length * ROWS_PER_SHAPE * 2);
    });
  }

  it("rejects a path this CPU lacks, an unknown format and a Q8_K row that is not whole blocks", () => {
    const binding = loadBinding();
    expect(() => binding.quantizeActivations("no-such-path", "i8", new Float32Array(256))).toThrow(
      /not available/,
    );
    expect(() =>
      binding.quantizeActivations("scalar", "q4" as "i8", new Float32Array(256)),
    ).toThrow(RangeError);
    expect(() => binding.quantizeActivations("scalar", "q8k", new Float32Array(300))).toThrow(
      RangeError,
    );
  });
});
