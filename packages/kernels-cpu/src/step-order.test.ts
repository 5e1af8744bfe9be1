/**
 * Steps on one CpuModel run one at a time, in call order, and each caller gets its own result or
 * its own error. A native model stand-in that fails on demand makes the failure happen inside the
 * native call (where the real addon fails on e.g. memory exhaustion), which valid inputs cannot.
 */
import { readModelDescription } from "@bitnet-ts/engine-core";
import { afterAll, describe, expect, it } from "vitest";
import { cleanup, fixture } from "../test/models";
import { CpuModel } from "./backend";
import type { NativeModel } from "./binding";

afterAll(cleanup);

/** A NativeModel whose step waits a little, then fails when its first token is 13. */
function flakyNative(log: string[]): NativeModel {
  let running = 0;
  return {
    createSequence: (id) => log.push(`create ${id}`),
    freeSequence: (id) => log.push(`free ${id}`),
    forkSequence: () => {},
    truncateSequence: () => {},
    step: async (tokens) => {
      running++;
      if (running > 1) {
        throw new Error("two native steps at once");
      }
      log.push(`step ${tokens[0]}`);
      await new Promise((r) => setTimeout(r, 10));
      running--;
      if (tokens[0] === 13) {
        throw new Error("native step failed (out of memory)");
      }
    },
    kernelCounts: () => ({}),
    info: () => ({
      kernelPath: "scalar",
      threads: 1,
      mappedBytes: 0,
      hugeMappedBytes: 0,
      rereadBytes: 0,
      loadedBytes: 0,
      repackedBytes: 0,
      opMilliseconds: {},
      kvBytesPerToken: 1024,
      kvAllocatedBytes: 0,
      kvSpareBytes: 0,
      scratchBytes: 0,
      warmedBetweenStepsBytes: 0,
      decodeFusedOps: {},
    }),
    dispose: () => log.push("dispose"),
  };
}

describe("CpuModel step order", () => {
  it("a failing step rejects only its own caller; the others get their own results", async () => {
    const description = await readModelDescription(await fixture("tiny-i2s"));
    const log: string[] = [];
    const model = new CpuModel(description, flakyNative(log), 64, 256, new Map(), 1 << 30);
    const a = model.createSequence();
    const b = model.createSequence();
    const c = model.createSequence();
    const outcomes = await Promise.allSettled([
      model.step([{ sequence: a, tokens: [11] }]),
      model.step([{ sequence: b, tokens: [13] }]),
      model.step([{ sequence: c, tokens: [17] }]),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect((outcomes[1] as PromiseRejectedResult).reason.message).toContain("out of memory");
    expect(log.filter((l) => l.startsWith("step"))).toEqual(["step 11", "step 13", "step 17"]);
    // The failed step appended nothing; the others did.
    expect([a, b, c].map((s) => model.sequenceLength(s))).toEqual([1, 0, 1]);
    // A sequence freed while a step runs is freed natively after it.
    const d = model.createSequence();
    const running = model.step([{ sequence: d, tokens: [19] }]);
    await new Promise((r) => setTimeout(r, 1));
    model.freeSequence(a);
    expect(log.at(-1)).toBe("step 19");
    await running;
    expect(log.at(-1)).toBe("free 0");
    await model.dispose();
    expect(log.at(-1)).toBe("dispose");
  });
});
