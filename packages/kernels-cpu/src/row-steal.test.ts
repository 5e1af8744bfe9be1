// The matrix ops' row sharing (native/work_steal.h): each thread starts on its static share and
// a thread that runs out takes rows from the back of another's; every row runs exactly once.
import { describe, expect, it } from "vitest";
import { loadBinding } from "./loader";

function countByThread(owners: Int32Array, threads: number): number[] {
  const counts = new Array<number>(threads).fill(0);
  for (const o of owners) {
    expect(o, "every row runs exactly once (-1: none, -2: twice)").toBeGreaterThanOrEqual(0);
    counts[o]! += 1;
  }
  return counts;
}

describe("row stealing", () => {
  it("runs every row exactly once, whatever the rows, threads and claim sizes", () => {
    const binding = loadBinding();
    for (const [rows, threads, align, minRows] of [
      [1, 2, 16, 16],
      [15, 2, 16, 16],
      [2560, 2, 16, 25],
      [6912, 3, 16, 16],
      [128256, 2, 16, 16],
      [1000, 4, 1, 0],
      [33, 8, 8, 8],
    ] as const) {
      const owners = binding.rowStealCoverage(rows, threads, align, minRows, -1, 0);
      expect(owners).toHaveLength(rows);
      expect(countByThread(owners, threads).reduce((a, b) => a + b, 0)).toBe(rows);
    }
  });

  it("gives a slow thread's rows to the others, from the end of its share", () => {
    const binding = loadBinding();
    // Thread 0 (the caller, first to start) owns rows 0..2047 but sleeps 5 ms after each claim
    // (its first claim is half of its share); thread 1 runs its own rows in microseconds and
    // then takes thread 0's from the back.
    const owners = binding.rowStealCoverage(4096, 2, 16, 16, 0, 5);
    const [slow, fast] = countByThread(owners, 2);
    expect(fast).toBeGreaterThan(2048);
    expect(slow).toBeLessThan(2048);
    expect(owners[2047]).toBe(1); // the back of the slow thread's share
    expect(owners[4095]).toBe(1); // the fast thread's own rows stay its own
  });

  it("rejects arguments out of range", () => {
    const binding = loadBinding();
    expect(() => binding.rowStealCoverage(0, 2, 16, 16, -1, 0)).toThrow(RangeError);
    expect(() => binding.rowStealCoverage(16, 0, 16, 16, -1, 0)).toThrow(RangeError);
    expect(() => binding.rowStealCoverage(16, 2, 0, 16, -1, 0)).toThrow(RangeError);
    expect(() =>
      (binding.rowStealCoverage as unknown as (...a: unknown[]) => unknown)(16, 2),
    ).toThrow(TypeError);
  });
});
