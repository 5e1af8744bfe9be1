// Steps run the small ops between two projections (RMS norms, a relu² GLU, residual adds, RoPE)
// inside the ops that consume them, on every thread and without barriers of their own
// (native/model_step.cc, plan_decode_fusion); steps of several tokens too, each thread fusing
// them for the tokens it quantizes. That changes speed only: a decode with the fusion, and a
// prompt fed in steps of several tokens, must give the same bits as without it
// (BITNET_DECODE_FUSE=0, read as each model loads), on every kernel path, for relu² (2B-4T
// layout) and SiLU (llama.cpp's bitnet) models, with an even and an odd thread count.
import { EngineError, EngineErrorCode } from "@bitnet-ts/engine-core";
import { sameBits } from "@bitnet-ts/engine-core/testing";
import { afterAll, describe, expect, it } from "vitest";
import { argmax, cleanup, cpuModel, LONG_PROMPT, SLOW_TEST_MS, withEnv } from "../test/models";
import { ALL_KERNEL_PATHS, pathSkipReason, pathTitle } from "../test/paths";
import type { CpuModel } from "./backend";

afterAll(cleanup);

/** Loads a model with BITNET_DECODE_FUSE set as given (undefined: unset) while it compiles. */
const withFuse = <T>(value: string | undefined, load: () => Promise<T>): Promise<T> =>
  withEnv("BITNET_DECODE_FUSE", value, load);

/** The logits of a prompt fed one token per step, then of eight greedy tokens after it. */
async function decodeOneByOne(model: CpuModel, prompt: readonly number[]): Promise<Float32Array[]> {
  const rows: Float32Array[] = [];
  const seq = model.createSequence();
  let last = 0;
  for (const token of [...prompt, ...new Array<number>(8).fill(-1)]) {
    const { runs } = await model.step([{ sequence: seq, tokens: [token < 0 ? last : token] }]);
    const logits = Float32Array.from(runs[0]!.logits);
    rows.push(logits);
    last = argmax(logits);
  }
  model.freeSequence(seq);
  return rows;
}

/**
 * The logits of every token of a prompt fed in batched steps (its first 17 tokens in one step,
 * which the amx path runs on its tiles, then the other 3 in a second step, past the first's
 * cache), two sequences side by side in the first step.
 */
async function promptInSteps(model: CpuModel, prompt: readonly number[]): Promise<Float32Array[]> {
  const rows: Float32Array[] = [];
  const a = model.createSequence();
  const b = model.createSequence();
  const first = await model.step([
    { sequence: a, tokens: prompt.slice(0, 17), logits: "all" },
    { sequence: b, tokens: prompt.slice(3, 9), logits: "all" },
  ]);
  const vocab = LLAMA3_VOCAB;
  for (const run of first.runs) {
    for (let i = 0; i < run.logits.length / vocab; i++) {
      rows.push(Float32Array.from(run.logits.subarray(i * vocab, (i + 1) * vocab)));
    }
  }
  const second = await model.step([{ sequence: a, tokens: prompt.slice(17), logits: "all" }]);
  const logits = second.runs[0]!.logits;
  for (let i = 0; i < logits.length / vocab; i++) {
    rows.push(Float32Array.from(logits.subarray(i * vocab, (i + 1) * vocab)));
  }
  model.freeSequence(a);
  model.freeSequence(b);
  return rows;
}

// The tiny fixtures have two layers: per layer four norms, a GLU, RoPE on q and k, and two
// residual adds, of which the last layer's second feeds the output norm (read by the head, not a
// projection), so neither that add nor that norm fuses. A SiLU GLU does not fuse (its exp costs
// more on every thread than the barrier it would save). Every residual add follows the
// projection that writes one of its inputs (o, down), which computes it on its rows
// (add_in_projection).
const TINY_FUSED = { add: 3, add_in_projection: 4, glu: 2, rms_norm: 8, rope: 4 };
const TINY_FUSED_SILU = { add: 3, add_in_projection: 4, rms_norm: 8, rope: 4 };

/** The tiny fixtures' vocabulary (LLaMA-3's). */
const LLAMA3_VOCAB = 128256;

const MODELS = [
  ["tiny-i2s", "I2_S, relu²", TINY_FUSED],
  ["tiny-tq2", "TQ2_0, SiLU", TINY_FUSED_SILU],
  ["tiny-tq1", "TQ1_0, SiLU", TINY_FUSED_SILU],
] as const;

for (const kernelPath of ALL_KERNEL_PATHS) {
  describe.skipIf(pathSkipReason(kernelPath) !== undefined)(
    `decode fusion on kernel path ${pathTitle(kernelPath)}`,
    () => {
      for (const [name, what, fusedOps] of MODELS) {
        it(
          `${name} (${what}): the same bits with and without it, 2 and 3 threads`,
          async () => {
            for (const threads of [2, 3]) {
              const fused = await withFuse(undefined, () =>
                cpuModel(name, { kernelPath, threads }),
              );
              const plain = await withFuse("0", () => cpuModel(name, { kernelPath, threads }));
              try {
                expect(fused.info().decodeFusedOps).toEqual(fusedOps);
                expect(plain.info().decodeFusedOps).toEqual({});
                const a = await decodeOneByOne(fused, LONG_PROMPT);
                const b = await decodeOneByOne(plain, LONG_PROMPT);
                expect(a).toHaveLength(LONG_PROMPT.length + 8);
                expect(a[0]).toHaveLength(LLAMA3_VOCAB);
                expect(
                  a.every((row, i) => sameBits(row, b[i]!)),
                  `${name} on ${kernelPath}, ${threads} threads`,
                ).toBe(true);
                const batchedA = await promptInSteps(fused, LONG_PROMPT);
                const batchedB = await promptInSteps(plain, LONG_PROMPT);
                expect(batchedA).toHaveLength(17 + 6 + 3);
                expect(
                  batchedA.every((row, i) => sameBits(row, batchedB[i]!)),
                  `${name} on ${kernelPath}, ${threads} threads, batched steps`,
                ).toBe(true);
              } finally {
                await fused.dispose();
                await plain.dispose();
              }
            }
          },
          SLOW_TEST_MS,
        );
      }
    },
  );
}

describe("BITNET_DECODE_FUSE", () => {
  it("takes 0 or 1 and refuses anything else before a model loads", async () => {
    const one = await withFuse("1", () => cpuModel("tiny-i2s", { threads: 2 }));
    expect(one.info().decodeFusedOps).toEqual(TINY_FUSED);
    await one.dispose();
    for (const bad of ["2", "off", "yes"]) {
      const error = await withFuse(bad, () => cpuModel("tiny-i2s", { threads: 2 })).catch(
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(EngineError);
      expect((error as EngineError).code).toBe(EngineErrorCode.BAD_OPTION);
      expect((error as EngineError).message).toContain(
        `BITNET_DECODE_FUSE must be 0 or 1, got "${bad}"`,
      );
    }
  });
});
