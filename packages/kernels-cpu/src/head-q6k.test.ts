// The Q6_K output head (`head: "q6_k"`): the load-time requantizer against the TypeScript
// quantizeQ6_K byte for byte, every path's Q6_K × Q8_K kernel against the TypeScript dot
// (quantizeQ8_K + dotQ6_KQ8_K) bit for bit, and a model run with it against the F16 head.
import { dotQ6_KQ8_K, Q6_K_BYTES, quantizeQ6_K, quantizeQ8_K } from "@bitnet-ts/quantization";
import { afterAll, describe, expect, it } from "vitest";
import { argmax, cleanup, cpuModel, LONG_PROMPT, SLOW_TEST_MS } from "../test/models";
import { cosine, rng } from "../test/numbers";
import { ALL_KERNEL_PATHS, pathSkipReason } from "../test/paths";
import { loadBinding } from "./loader";

afterAll(cleanup);

/** Values of mixed magnitude, with some all-zero and some tiny sub-blocks of 16. */
function values(random: () => number, n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    x[i] = (random() * 2 - 1) * 10 ** Math.floor(random() * 4 - 2);
  }
  for (let s = 0; s < n / 16; s++) {
    const pick = random();
    if (pick < 0.05) {
      x.fill(0, 16 * s, 16 * s + 16);
    } else if (pick < 0.08) {
      for (let i = 16 * s; i < 16 * s + 16; i++) {
        x[i] = x[i]! * 1e-20;
      }
    }
  }
  return x;
}

describe("the Q6_K requantizer of the output head", () => {
  it("writes the TypeScript quantizeQ6_K's bytes (ggml quantize_row_q6_K_ref)", () => {
    const binding = loadBinding();
    const random = rng(0x6b);
    for (let r = 0; r < 24; r++) {
      const x = values(random, 256 * (1 + Math.floor(random() * 10)));
      const want = quantizeQ6_K(x);
      const got = binding.quantizeQ6K(x);
      expect(Buffer.from(got).equals(Buffer.from(want)), `row ${r} (${x.length} values)`).toBe(
        true,
      );
    }
    const zeros = binding.quantizeQ6K(new Float32Array(512));
    expect(zeros.every((b) => b === 0)).toBe(true);
    expect(() => binding.quantizeQ6K(new Float32Array(100))).toThrow(RangeError);
  });
});

describe("the Q6_K × Q8_K head kernel equals the TypeScript dot bit for bit", () => {
  for (const path of ALL_KERNEL_PATHS.filter((p) => p !== "amx")) {
    const skip = pathSkipReason(path);
    it.skipIf(skip !== undefined)(`${path}${skip ? ` (skipped: ${skip})` : ""}`, () => {
      const binding = loadBinding();
      const random = rng(0x9e4d);
      for (const [rows, cols, T] of [
        [7, 256, 1],
        [33, 2560, 1],
        [5, 1024, 3],
        [16, 2560, 5],
      ] as const) {
        const weights = quantizeQ6_K(values(random, rows * cols));
        const x = values(random, T * cols);
        const got = binding.q6kGemm(path, weights, rows, x);
        expect(got.length).toBe(T * rows);
        const rowBytes = (cols / 256) * Q6_K_BYTES;
        for (let t = 0; t < T; t++) {
          const xq = quantizeQ8_K(x.subarray(t * cols, (t + 1) * cols));
          for (let r = 0; r < rows; r++) {
            const want = dotQ6_KQ8_K(weights.subarray(r * rowBytes, (r + 1) * rowBytes), xq);
            expect(got[t * rows + r], `${rows}×${cols}, token ${t}, row ${r}`).toBe(want);
          }
        }
      }
    });
  }

  it("rejects a path this CPU lacks and weights that are not whole blocks", () => {
    const binding = loadBinding();
    const w = new Uint8Array(Q6_K_BYTES);
    expect(() => binding.q6kGemm("no-such-path", w, 1, new Float32Array(256))).toThrow(
      /not available/,
    );
    expect(() => binding.q6kGemm("scalar", w.subarray(1), 1, new Float32Array(256))).toThrow(
      RangeError,
    );
    expect(() => binding.q6kGemm("scalar", w, 1, new Float32Array(300))).toThrow(RangeError);
  });
});

describe("a model with head: q6_k", () => {
  it("requantizes the F16 head at load: same top-1 on the prompt, cosine ≥ 0.999, reported as the Q6_K × Q8_K kernel", {
    timeout: SLOW_TEST_MS,
  }, async () => {
    const f16 = await cpuModel("tiny-i2s", { threads: 2 });
    const q6 = await cpuModel("tiny-i2s", { threads: 2, head: "q6_k" });
    // Q6_K is 210 bytes per 256 values: under half of F16's 512.
    expect(q6.info().repackedBytes).toBeGreaterThan(0);
    const vocab = f16.description.hparams.vocabSize;
    const run = async (model: typeof f16) => {
      const seq = model.createSequence();
      const { runs } = await model.step([{ sequence: seq, tokens: LONG_PROMPT, logits: "all" }]);
      model.freeSequence(seq);
      return runs[0]!.logits;
    };
    const a = await run(f16);
    const b = await run(q6);
    for (let t = 0; t < LONG_PROMPT.length; t++) {
      const ra = a.subarray(t * vocab, (t + 1) * vocab);
      const rb = b.subarray(t * vocab, (t + 1) * vocab);
      expect(argmax(rb)).toBe(argmax(ra));
      expect(cosine(ra, rb)).toBeGreaterThanOrEqual(0.999);
    }
    expect([...q6.kernelCounts().keys()].some((k) => k.endsWith(".output.q6_k.q8_k"))).toBe(true);
    await f16.dispose();
    await q6.dispose();
  });

  it("refuses an unknown head type with a typed error", { timeout: SLOW_TEST_MS }, async () => {
    await expect(cpuModel("tiny-i2s", { threads: 2, head: "q4_0" as "q6_k" })).rejects.toThrow(
      /head must be q8_0 or q6_k, got "q4_0"/,
    );
  });
});
