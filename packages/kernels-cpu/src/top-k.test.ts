// The addon's top-k reduction (native/top_k.h) against engine-core's topKRows, which defines the
// ranking every backend's "argmax" and { topK } reductions follow: higher value first, equal
// values by lower id, NaN after every number. Seeded rows with what a sorted top rarely meets:
// ties, NaN (a few or all), ±Infinity, fewer numbers than k, and the partial-sort path (k > 256).
import { topKRows } from "@bitnet-ts/engine-core";
import { describe, expect, it } from "vitest";
import { rng } from "../test/numbers";
import { loadBinding } from "./loader";

type Shape = "spread" | "ties" | "nan" | "mostly-nan" | "all-nan" | "infinity" | "ascending";
const SHAPES: readonly Shape[] = [
  "spread",
  "ties",
  "nan",
  "mostly-nan",
  "all-nan",
  "infinity",
  "ascending",
];

function rows(random: () => number, count: number, vocab: number, shape: Shape): Float32Array {
  const x = new Float32Array(count * vocab);
  for (let i = 0; i < x.length; i++) {
    const u = random() * 2 - 1;
    x[i] =
      shape === "ties"
        ? Math.round(u * 4) // five values for the whole row
        : shape === "ascending"
          ? (i % vocab) / 8 // every entry beats the ones kept so far
          : u * 20;
    if ((shape === "nan" && random() < 0.05) || (shape === "mostly-nan" && random() < 0.95)) {
      x[i] = Number.NaN;
    }
    if (shape === "all-nan") {
      x[i] = Number.NaN;
    }
    if (shape === "infinity" && random() < 0.02) {
      x[i] = random() < 0.5 ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
    }
  }
  return x;
}

describe("topKRows in the addon", () => {
  const binding = loadBinding();

  for (const shape of SHAPES) {
    it(`ranks ${shape} rows as engine-core does, for k from 1 to the vocabulary`, () => {
      const random = rng(shape.length * 7919);
      for (const vocab of [1, 7, 100, 1000]) {
        const count = 3;
        const logits = rows(random, count, vocab, shape);
        for (const k of [1, 2, 5, 40, 256, 257, 999, 1000]) {
          if (k > vocab) {
            continue;
          }
          const expected = topKRows(logits, count, vocab, k);
          const ids = new Int32Array(count * k).fill(-1);
          const values = new Float32Array(count * k);
          binding.topKRows(logits, count, vocab, k, ids, values);
          expect([...ids], `vocab ${vocab}, k ${k}`).toEqual([...expected.ids]);
          expect([...values], `vocab ${vocab}, k ${k}`).toEqual([...expected.logits]);
        }
      }
    });
  }

  it("k = 1 is the greedy argmax (the first largest number; 0 when a row is all NaN)", () => {
    const logits = new Float32Array([Number.NaN, 3, 5, 5, -1, Number.NaN, Number.NaN, Number.NaN]);
    const ids = new Int32Array(2);
    binding.topKRows(logits, 2, 4, 1, ids, new Float32Array(2));
    expect([...ids]).toEqual([2, 0]);
  });

  it("refuses a k beyond the vocabulary or arrays too short for the rows, with a RangeError", () => {
    const logits = new Float32Array(8);
    expect(() =>
      binding.topKRows(logits, 2, 4, 5, new Int32Array(10), new Float32Array(10)),
    ).toThrow(RangeError);
    expect(() => binding.topKRows(logits, 3, 4, 1, new Int32Array(3), new Float32Array(3))).toThrow(
      RangeError,
    );
    expect(() => binding.topKRows(logits, 2, 4, 2, new Int32Array(3), new Float32Array(4))).toThrow(
      RangeError,
    );
    expect(() => binding.topKRows(logits, 2, 4, 0, new Int32Array(3), new Float32Array(4))).toThrow(
      RangeError,
    );
    expect(() =>
      binding.topKRows(logits, 2, 4, 1.5, new Int32Array(4), new Float32Array(4)),
    ).toThrow(RangeError);
  });
});
