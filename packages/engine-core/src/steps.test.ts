import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { argmaxRows, checkReduction, StepQueue, topKRows } from "./steps";

/** The k best (value desc, index asc) of one row by sorting everything: the obvious oracle. */
function sortedTop(row: Float32Array, k: number): number[] {
  return Array.from(row.keys())
    .sort((a, b) => {
      const va = row[a]!;
      const vb = row[b]!;
      if (Number.isNaN(va) !== Number.isNaN(vb)) {
        return Number.isNaN(va) ? 1 : -1;
      }
      return va === vb || (Number.isNaN(va) && Number.isNaN(vb)) ? a - b : vb - va;
    })
    .slice(0, k);
}

describe("logits reductions", () => {
  it("top-k equals sorting each row (ties: lower id first; NaN last)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.oneof(fc.integer({ min: -3, max: 3 }), fc.constant(Number.NaN)), {
          minLength: 160,
          maxLength: 160,
        }),
        (vocab, rows, kWanted, values) => {
          const k = Math.min(kWanted, vocab);
          const logits = Float32Array.from(values.slice(0, rows * vocab));
          const padded = new Float32Array(rows * vocab);
          padded.set(logits);
          const top = topKRows(padded, rows, vocab, k);
          const arg = argmaxRows(padded, rows, vocab);
          for (let r = 0; r < rows; r++) {
            const want = sortedTop(padded.subarray(r * vocab, (r + 1) * vocab), k);
            expect([...top.ids.subarray(r * k, (r + 1) * k)]).toEqual(want);
            expect(arg[r]).toBe(want[0]);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("rejects a top-k outside 1..vocab", () => {
    expect(() => checkReduction({ topK: 0 }, 10)).toThrow(/topK: 1..10/);
    expect(() => checkReduction({ topK: 11 }, 10)).toThrow();
    expect(() => checkReduction({ topK: 2.5 }, 10)).toThrow();
    expect(() => checkReduction("median" as never, 10)).toThrow();
    checkReduction({ topK: 10 }, 10);
    checkReduction("argmax", 10);
    checkReduction(undefined, 10);
  });
});

describe("StepQueue", () => {
  it("runs jobs one at a time in call order; a failure reaches only its own caller", async () => {
    const queue = new StepQueue();
    const order: string[] = [];
    let running = 0;
    const job = (name: string, fail: boolean) => async () => {
      running++;
      expect(running).toBe(1);
      order.push(`start ${name}`);
      await new Promise((r) => setTimeout(r, 5));
      order.push(`end ${name}`);
      running--;
      if (fail) {
        throw new Error(`${name} failed`);
      }
      return name;
    };
    const outcomes = await Promise.allSettled([
      queue.run(job("a", true)),
      queue.run(job("b", false)),
      queue.run(job("c", true)),
      queue.run(job("d", false)),
    ]);
    expect(outcomes).toEqual([
      { status: "rejected", reason: new Error("a failed") },
      { status: "fulfilled", value: "b" },
      { status: "rejected", reason: new Error("c failed") },
      { status: "fulfilled", value: "d" },
    ]);
    expect(order).toEqual([
      "start a",
      "end a",
      "start b",
      "end b",
      "start c",
      "end c",
      "start d",
      "end d",
    ]);
    expect(queue.busy).toBe(false);
    await queue.idle();
  });

  it("a job that throws synchronously does not stall the queue", async () => {
    const queue = new StepQueue();
    const bad = queue.run(() => {
      throw new Error("sync");
    });
    await expect(bad).rejects.toThrow("sync");
    await expect(queue.run(async () => 7)).resolves.toBe(7);
  });
});
