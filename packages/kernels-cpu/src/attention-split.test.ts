// One token's attention deep in a context splits across threads by its work (scores by key
// block, softmax by query head, values by 64 output lanes: native/model_step.cc,
// attend_one_token) instead of by query heads, so each KV byte is read by one thread. That changes
// speed only: a decode through it must give the same bits as the head split
// (BITNET_ATTENTION_SPLIT=0, read as each model loads), on every kernel path, for 32- and
// 128-wide heads, with an even and an odd thread count, and the step's kernel counts say which
// of the two ran.
import { EngineError, EngineErrorCode } from "@bitnet-ts/engine-core";
import { sameBits } from "@bitnet-ts/engine-core/testing";
import { afterAll, describe, expect, it } from "vitest";
import { argmax, cleanup, cpuModel, SLOW_TEST_MS, withEnv } from "../test/models";
import { ALL_KERNEL_PATHS, pathSkipReason, pathTitle } from "../test/paths";
import type { CpuModel } from "./backend";

afterAll(cleanup);

/** Loads a model with BITNET_ATTENTION_SPLIT set as given (undefined: unset) while it compiles. */
const withSplit = <T>(value: string | undefined, load: () => Promise<T>): Promise<T> =>
  withEnv("BITNET_ATTENTION_SPLIT", value, load);

/** `n` token ids below `vocab`, the same every run. */
function promptOf(n: number, vocab: number): number[] {
  return Array.from({ length: n }, (_, i) => 1 + ((i * 7919 + 13) % (vocab - 1)));
}

/** The logits of `decode` greedy tokens after a prompt fed in one step. */
async function decodeAfter(
  model: CpuModel,
  prompt: readonly number[],
  decode: number,
): Promise<Float32Array[]> {
  const rows: Float32Array[] = [];
  const seq = model.createSequence();
  const first = await model.step([{ sequence: seq, tokens: [...prompt] }]);
  let last = argmax(first.runs[0]!.logits);
  for (let i = 0; i < decode; i++) {
    const { runs } = await model.step([{ sequence: seq, tokens: [last] }]);
    const logits = Float32Array.from(runs[0]!.logits);
    rows.push(logits);
    last = argmax(logits);
  }
  model.freeSequence(seq);
  return rows;
}

/** Calls of the split attention kernel (`cpu.<path>.attention.gqa.f16kv.split`) so far. */
function splitCalls(model: CpuModel): number {
  let calls = 0;
  for (const [id, n] of model.kernelCounts()) {
    if (id.endsWith(".attention.gqa.f16kv.split")) {
      calls += n;
    }
  }
  return calls;
}

const LAYERS = 2;
const MODELS = [
  ["tiny-i2s", "32-wide heads, 8 on 2 KV heads", 128256],
  ["heads128-tq2", "128-wide heads, 8 on 2 KV heads", 32000],
] as const;

for (const kernelPath of ALL_KERNEL_PATHS) {
  describe.skipIf(pathSkipReason(kernelPath) !== undefined)(
    `one token's attention split by its work on kernel path ${pathTitle(kernelPath)}`,
    () => {
      for (const [name, what, vocab] of MODELS) {
        it(
          `${name} (${what}): the same bits as the head split, 2 and 3 threads`,
          async () => {
            // 100 positions: four key blocks a KV head, so a thread's share of the scores
            // crosses from one KV head to the next.
            const prompt = promptOf(100, vocab);
            for (const threads of [2, 3]) {
              const split = await withSplit("1", () =>
                cpuModel(name, { kernelPath, threads }, 128),
              );
              const plain = await withSplit("0", () =>
                cpuModel(name, { kernelPath, threads }, 128),
              );
              try {
                const a = await decodeAfter(split, prompt, 6);
                const b = await decodeAfter(plain, prompt, 6);
                expect(splitCalls(split)).toBe(6 * LAYERS);
                expect(splitCalls(plain)).toBe(0);
                expect(a[0]).toHaveLength(vocab);
                expect(
                  a.every((row, i) => sameBits(row, b[i]!)),
                  `${name} on ${kernelPath}, ${threads} threads`,
                ).toBe(true);
              } finally {
                await split.dispose();
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

describe("when one token's attention splits by its work", () => {
  it(
    "does so by default from 256 positions, not on one thread, with the bits of the head split",
    async () => {
      const prompt = promptOf(254, 128256);
      const byDefault = await withSplit(undefined, () => cpuModel("tiny-i2s", { threads: 2 }, 512));
      const plain = await withSplit("0", () => cpuModel("tiny-i2s", { threads: 2 }, 512));
      const single = await withSplit("1", () => cpuModel("tiny-i2s", { threads: 1 }, 512));
      try {
        // Decode steps at positions 254, 255, 256, 257: attending to 255 … 258 positions.
        const a = await decodeAfter(byDefault, prompt, 4);
        const b = await decodeAfter(plain, prompt, 4);
        const c = await decodeAfter(single, prompt, 4);
        expect(splitCalls(byDefault)).toBe(3 * LAYERS);
        expect(splitCalls(single)).toBe(0);
        expect(a.every((row, i) => sameBits(row, b[i]!) && sameBits(row, c[i]!))).toBe(true);
      } finally {
        await byDefault.dispose();
        await plain.dispose();
        await single.dispose();
      }
    },
    SLOW_TEST_MS,
  );
});

describe("BITNET_ATTENTION_SPLIT", () => {
  it("takes a number of positions and refuses anything else before a model loads", async () => {
    for (const bad of ["-1", "256k", "never", "1e3"]) {
      const error = await withSplit(bad, () => cpuModel("tiny-i2s", { threads: 2 })).catch(
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(EngineError);
      expect((error as EngineError).code).toBe(EngineErrorCode.BAD_OPTION);
      expect((error as EngineError).message).toContain(
        `BITNET_ATTENTION_SPLIT must be a number of positions (0: never), got "${bad}"`,
      );
    }
  });
});
