// Between one-token steps, while the main thread samples and posts the next step, each thread of
// the model's pool (the step thread included) asks L2 for the start of its share of the next
// step's first projections (Model::warm_between_steps; BITNET_DECODE_WARM_BETWEEN_BYTES, read as
// the model loads, is the budget shared by the threads, 0 turns it off). It must change speed
// only, be armed by one-token steps and not by prompts, stay within its budget, and run on the
// step thread as well as on the pool's workers.
import { sameBits } from "@bitnet-ts/engine-core/testing";
import { afterAll, describe, expect, it } from "vitest";
import { cleanup, cpuModel, LONG_PROMPT, SLOW_TEST_MS, withEnv } from "../test/models";
import type { CpuModel } from "./backend";

afterAll(cleanup);

const VARIABLE = "BITNET_DECODE_WARM_BETWEEN_BYTES";
const BUDGET = 64 * 1024;

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const warmed = (model: CpuModel): number => model.native.info().warmedBetweenStepsBytes;

/** A prompt step, then `steps` one-token steps with a pause after each: every step's logits. */
async function decode(model: CpuModel, steps: number, afterEach: () => void = () => {}) {
  const rows: Float32Array[] = [];
  const seq = model.createSequence();
  const prompt = await model.step([{ sequence: seq, tokens: LONG_PROMPT.slice(0, 8) }]);
  rows.push(Float32Array.from(prompt.runs[0]!.logits));
  await pause(20);
  afterEach();
  for (let i = 0; i < steps; i++) {
    const { runs } = await model.step([{ sequence: seq, tokens: [LONG_PROMPT[8 + i]!] }]);
    rows.push(Float32Array.from(runs[0]!.logits));
    await pause(20);
    afterEach();
  }
  model.freeSequence(seq);
  return rows;
}

describe("weights asked for between one-token steps", () => {
  it(
    "are armed by one-token steps only, stay within the budget, and change no bit",
    async () => {
      const off = await withEnv(VARIABLE, "0", () => cpuModel("tiny-i2s", { threads: 2 }));
      const small = await withEnv(VARIABLE, String(BUDGET), () =>
        cpuModel("tiny-i2s", { threads: 2 }),
      );
      const byDefault = await withEnv(VARIABLE, undefined, () =>
        cpuModel("tiny-i2s", { threads: 2 }),
      );
      try {
        const seen: number[] = [];
        const reference = await decode(off, 4);
        const rows = await decode(small, 4, () => seen.push(warmed(small)));
        const defaults = await decode(byDefault, 4);
        // Nothing after the prompt step (8 tokens), then the same amount after each one-token
        // step: each thread's half of the budget (the tiny model's first projections hold more).
        expect(seen[0]).toBe(0);
        const perStep = seen[1]!;
        expect(perStep).toBeGreaterThan(0);
        expect(perStep).toBeLessThanOrEqual(BUDGET);
        expect(seen.slice(1)).toEqual([1, 2, 3, 4].map((k) => k * perStep));
        expect(warmed(off)).toBe(0);
        expect(warmed(byDefault)).toBeGreaterThanOrEqual(4 * perStep);
        for (let i = 0; i < reference.length; i++) {
          expect(sameBits(rows[i]!, reference[i]!)).toBe(true);
          expect(sameBits(defaults[i]!, reference[i]!)).toBe(true);
        }
      } finally {
        for (const m of [off, small, byDefault]) {
          await m.dispose();
        }
      }
    },
    SLOW_TEST_MS,
  );

  it(
    "run on the step thread of a one-thread model too",
    async () => {
      const model = await withEnv(VARIABLE, String(BUDGET), () =>
        cpuModel("tiny-i2s", { threads: 1 }),
      );
      try {
        await decode(model, 2);
        expect(warmed(model)).toBeGreaterThan(0);
        expect(warmed(model)).toBeLessThanOrEqual(2 * BUDGET);
      } finally {
        await model.dispose();
      }
    },
    SLOW_TEST_MS,
  );
});
