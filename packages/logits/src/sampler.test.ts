import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Candidates } from "./candidates";
import { Mt19937 } from "./mt19937";
import { applyLogitBias, applyPenalties, argmax, minP, topK, topP, typical } from "./processors";
import { Sampler } from "./sampler";

const cands = (logits: number[]) => new Candidates(Float32Array.from(logits));
const ids = (c: Candidates) => Array.from(c.ids.subarray(0, c.size));

describe("Mt19937", () => {
  it("matches std::mt19937's reference outputs", () => {
    const rng = new Mt19937(5489);
    expect(rng.nextU32()).toBe(3499211612);
    expect(rng.nextU32()).toBe(581869302);
    const r = new Mt19937(5489);
    let last = 0;
    for (let i = 0; i < 10000; i++) {
      last = r.nextU32();
    }
    expect(last).toBe(4123659995); // the C++ standard's required 10000th value
    const d = new Mt19937(1).nextDouble();
    expect(d).toBeGreaterThanOrEqual(0);
    expect(d).toBeLessThan(1);
  });
});

describe("processors (llama.cpp semantics)", () => {
  it("top-k keeps the k best, sorted, lower id first on ties", () => {
    const c = cands([1, 5, 3, 5, 2]);
    topK(c, 3);
    expect(ids(c)).toEqual([1, 3, 2]);
    const all = cands([1, 2]);
    topK(all, 0);
    expect(ids(all)).toEqual([1, 0]);
  });

  it("top-p keeps the smallest prefix reaching p", () => {
    // softmax of ln(0.5), ln(0.3), ln(0.2): probabilities 0.5, 0.3, 0.2
    const c = cands([Math.log(0.5), Math.log(0.3), Math.log(0.2)]);
    topP(c, 0.75);
    expect(ids(c)).toEqual([0, 1]);
    const d = cands([Math.log(0.5), Math.log(0.3), Math.log(0.2)]);
    topP(d, 0.5);
    expect(ids(d)).toEqual([0]);
  });

  it("min-p keeps tokens with p ≥ p_min · p_max", () => {
    const c = cands([Math.log(0.5), Math.log(0.3), Math.log(0.02), Math.log(0.18)]);
    minP(c, 0.1); // threshold 0.05
    expect(ids(c)).toEqual([0, 1, 3]);
  });

  it("typical keeps the tokens closest to the entropy", () => {
    const c = cands([Math.log(0.4), Math.log(0.4), Math.log(0.1), Math.log(0.1)]);
    typical(c, 0.5);
    expect(ids(c).sort()).toEqual([0, 1]);
  });

  it("penalties follow llama.cpp's formula and spare the newline", () => {
    const c = cands([2, -2, 1, 3]);
    applyPenalties(
      c,
      new Map([
        [0, 2],
        [1, 1],
        [3, 1],
      ]),
      { repeat: 2, frequency: 0.5, presence: 0.25 },
      3,
    );
    expect(Array.from(c.logits)).toEqual([2 / 2 - 2 * 0.5 - 0.25, -2 * 2 - 0.5 - 0.25, 1, 3]);
  });

  it("logit bias adds to the named tokens", () => {
    const c = cands([0, 0, 0]);
    applyLogitBias(
      c,
      new Map([
        [2, 5],
        [0, Number.NEGATIVE_INFINITY],
      ]),
    );
    expect(Array.from(c.logits)).toEqual([Number.NEGATIVE_INFINITY, 0, 5]);
  });

  it("a reset list is the same as a new one, in its own reused buffers", () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ noNaN: true, min: -20, max: 20 }), { minLength: 8, maxLength: 8 }),
        fc.array(fc.float({ noNaN: true, min: -20, max: 20 }), { minLength: 8, maxLength: 8 }),
        fc.integer({ min: 1, max: 8 }),
        (first, second, k) => {
          const c = cands(first);
          const full = c.ids;
          topK(c, k);
          c.softmax();
          c.reset(Float32Array.from(second));
          expect(c.ids).toBe(full); // refilled, not reallocated
          const fresh = cands(second);
          for (const list of [c, fresh]) {
            topK(list, k);
            list.softmax();
          }
          expect(ids(c)).toEqual(ids(fresh));
          expect(Array.from(c.probs.subarray(0, c.size))).toEqual(
            Array.from(fresh.probs.subarray(0, fresh.size)),
          );
        },
      ),
    );
  });

  it("argmax takes the first maximum", () => {
    expect(argmax([1, 3, 3, 2])).toBe(1);
  });
});

describe("Sampler", () => {
  const logits = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 3);

  it("is greedy at temperature ≤ 0, after bias and penalties", () => {
    const greedy = new Sampler({ temperature: 0 });
    expect(greedy.sample(logits)).toBe(argmax(logits));
    const biased = new Sampler({ temperature: 0, logitBias: { 7: 100 } });
    expect(biased.sample(logits)).toBe(7);
    const penalized = new Sampler({ temperature: 0, repeatPenalty: 100 });
    penalized.accept(argmax(logits));
    expect(penalized.sample(logits)).not.toBe(argmax(logits));
  });

  it("gives the same tokens for the same seed and settings, different for another seed", () => {
    const run = (seed: number) => {
      const s = new Sampler({ seed, temperature: 1.5, topK: 100, topP: 1, minP: 0 });
      return Array.from({ length: 50 }, () => s.sample(logits));
    };
    expect(run(42)).toEqual(run(42));
    expect(run(42)).not.toEqual(run(43));
    const s = new Sampler({ seed: 42 });
    expect(s.seed).toBe(42);
    expect(new Sampler({}).seed).toBeGreaterThanOrEqual(0);
  });

  it("samples in proportion to the probabilities", () => {
    const l = Float32Array.from([Math.log(0.6), Math.log(0.3), Math.log(0.1)]);
    const s = new Sampler({ seed: 1, temperature: 1, topK: 0, topP: 1, minP: 0 });
    const counts = [0, 0, 0];
    for (let i = 0; i < 20000; i++) {
      counts[s.sample(l)]!++;
    }
    expect(counts[0]! / 20000).toBeCloseTo(0.6, 1);
    expect(counts[1]! / 20000).toBeCloseTo(0.3, 1);
    expect(counts[2]! / 20000).toBeCloseTo(0.1, 1);
  });

  it("only ever returns tokens the filters keep", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 0, max: 1000 }), (k, seed) => {
        const s = new Sampler({ seed, topK: k, topP: 1, minP: 0, temperature: 2 });
        const top = Array.from(logits.keys())
          .sort((a, b) => logits[b]! - logits[a]! || a - b)
          .slice(0, k);
        expect(top).toContain(s.sample(logits));
      }),
      { numRuns: 200 },
    );
  });

  it("rejects invalid settings with a clear error", () => {
    const bad = expect.objectContaining({ code: "SAMPLING_INVALID" });
    expect(() => new Sampler({ topP: 1.5 })).toThrowError(bad);
    expect(() => new Sampler({ temperature: Number.NaN })).toThrowError(bad);
    expect(() => new Sampler({ topK: 1.5 })).toThrowError(bad);
    expect(() => new Sampler({ seed: 2 ** 40 })).toThrowError(bad);
    expect(() => new Sampler({ repeatPenalty: 0 })).toThrowError(bad);
  });
});

describe("Sampler.verify (speculative decoding)", () => {
  // Six tokens; with temperature 0.8 and top-k 4 the target distribution is the softmax of the
  // four best logits / 0.8.
  const logits = Float32Array.from([2.0, 0.5, 1.2, -1.0, 1.9, 0.1]);
  const settings = { temperature: 0.8, topK: 4 };
  const kept = [0, 4, 2, 1];
  const weights = kept.map((i) => Math.exp(logits[i]! / 0.8));
  const sum = weights.reduce((a, b) => a + b, 0);
  const target = new Map(kept.map((id, i) => [id, weights[i]! / sum]));

  /** Pearson's chi-square of observed counts against `target` (df = 3). */
  function chiSquare(counts: Map<number, number>, n: number): number {
    let x = 0;
    for (const [id, p] of target) {
      const expected = n * p;
      x += ((counts.get(id) ?? 0) - expected) ** 2 / expected;
    }
    return x;
  }

  it.each([
    ["the most likely token", 0],
    ["an unlikely one", 1],
    ["one outside the top-k (never accepted)", 3],
  ])("tokens are distributed as the target's whatever the draft: %s", (_what, draft) => {
    const n = 40_000;
    const sampler = new Sampler({ ...settings, seed: 1234 + draft });
    const counts = new Map<number, number>();
    let accepted = 0;
    for (let i = 0; i < n; i++) {
      const r = sampler.verify(logits, draft);
      counts.set(r.token, (counts.get(r.token) ?? 0) + 1);
      accepted += r.accepted ? 1 : 0;
      expect(r.accepted).toBe(r.token === draft);
    }
    // Nothing outside the target's support, and a fit at the 0.1% level (df 3: 16.27).
    expect([...counts.keys()].every((id) => target.has(id))).toBe(true);
    expect(chiSquare(counts, n)).toBeLessThan(16.27);
    // The draft is accepted with its target probability.
    expect(accepted / n).toBeCloseTo(target.get(draft) ?? 0, 2);
  });

  it("plain sampling passes the same test (the yardstick is sound)", () => {
    const n = 40_000;
    const sampler = new Sampler({ ...settings, seed: 99 });
    const counts = new Map<number, number>();
    for (let i = 0; i < n; i++) {
      const t = sampler.sample(logits);
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    expect(chiSquare(counts, n)).toBeLessThan(16.27);
    // And a wrong distribution fails it: always the argmax.
    expect(chiSquare(new Map([[0, n]]), n)).toBeGreaterThan(16.27);
  });

  it("greedy: accepted exactly when the draft is the argmax, penalties included", () => {
    const greedy = new Sampler({ temperature: 0 });
    expect(greedy.verify(logits, 0)).toEqual({ token: 0, accepted: true });
    expect(greedy.verify(logits, 4)).toEqual({ token: 0, accepted: false });
    const penalized = new Sampler({ temperature: 0, repeatPenalty: 2, repeatLastN: 8 });
    penalized.accept(0);
    // 2.0 / 2 = 1.0 now trails token 4's 1.9.
    expect(penalized.verify(logits, 4)).toEqual({ token: 4, accepted: true });
    expect(penalized.verify(logits, 4).token).toBe(penalized.sample(logits));
  });
});

/** A row's best k as a backend's { topK } reduction ranks them: higher logit, ties by lower id. */
function topOf(row: Float32Array, k: number): { ids: Int32Array; logits: Float32Array } {
  const order = Array.from(row.keys()).sort((a, b) => row[b]! - row[a]! || a - b);
  const ids = Int32Array.from(order.slice(0, k));
  return { ids, logits: Float32Array.from(ids, (id) => row[id]!) };
}

describe("Sampler.reduction and sampleTop", () => {
  it("asks for the top-k only when the chain starts with it on the raw logits", () => {
    const vocab = { vocabSize: 1000 };
    expect(new Sampler({ seed: 1 }, vocab).reduction).toEqual({ topK: 40 });
    expect(new Sampler({ seed: 1, topK: 5, minKeep: 9 }, vocab).reduction).toEqual({ topK: 9 });
    expect(new Sampler({ seed: 1, temperature: 0 }, vocab).reduction).toBe("argmax");
    expect(new Sampler({ seed: 1 }).reduction).toBe("full"); // no vocabulary size given
    expect(new Sampler({ seed: 1, topK: 0 }, vocab).reduction).toBe("full");
    expect(new Sampler({ seed: 1, topK: 1000 }, vocab).reduction).toBe("full");
    expect(new Sampler({ seed: 1, repeatPenalty: 1.1 }, vocab).reduction).toBe("full");
    expect(new Sampler({ seed: 1, logitBias: { 3: 2 } }, vocab).reduction).toBe("full");
    expect(new Sampler({ seed: 1, temperature: 0, presencePenalty: 0.5 }, vocab).reduction).toBe(
      "full",
    );
  });

  it("draws from a row's top-k exactly what sample draws from the whole row", () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ noNaN: true, min: -30, max: 30 }), { minLength: 50, maxLength: 300 }),
        fc.record({
          topK: fc.integer({ min: 1, max: 60 }),
          topP: fc.double({ min: 0.05, max: 1, noNaN: true }),
          minP: fc.double({ min: 0, max: 0.5, noNaN: true }),
          typicalP: fc.constantFrom(1, 0.9, 0.5),
          temperature: fc.double({ min: 0.05, max: 3, noNaN: true }),
          minKeep: fc.integer({ min: 0, max: 5 }),
          seed: fc.integer({ min: 0, max: 0xfffffffe }),
        }),
        (values, settings) => {
          const row = Float32Array.from(values);
          const whole = new Sampler(settings, { vocabSize: row.length });
          const reduced = new Sampler(settings, { vocabSize: row.length });
          const r = reduced.reduction;
          if (typeof r !== "object") {
            return; // the whole row is needed (k not below the vocabulary)
          }
          for (let step = 0; step < 4; step++) {
            const top = topOf(row, r.topK);
            expect(reduced.sampleTop(top.ids, top.logits)).toBe(whole.sample(row));
            row.reverse(); // another row for the next draw, from the same random stream
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("refuses top candidates it did not ask for, with a SamplingError", () => {
    const top = topOf(Float32Array.from([1, 2, 3, 4, 5, 6]), 3);
    expect(() => new Sampler({ seed: 1 }, { vocabSize: 6 }).sampleTop(top.ids, top.logits)).toThrow(
      /its reduction/,
    );
    expect(() =>
      new Sampler({ seed: 1, topK: 3, repeatPenalty: 1.2 }, { vocabSize: 6 }).sampleTop(
        top.ids,
        top.logits,
      ),
    ).toThrow(/the whole row/);
    expect(() =>
      new Sampler({ seed: 1, topK: 3 }, { vocabSize: 6 }).sampleTop(top.ids, top.logits),
    ).not.toThrow();
  });
});
