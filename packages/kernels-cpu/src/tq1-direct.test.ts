// TQ1_0 read as it is in the file (`tq1: "direct"`): on every kernel path the logits equal, bit for
// bit, those of the default repack to TQ2_0 at load (which the op-by-op suites hold to the
// reference), for a prompt (multi-token steps: row tiles converted to TQ2_0 per step) and for
// decode (one token: the base-3 blocks unpacked in registers).
import { logitsBatched, logitsOneByOne, sameBits } from "@bitnet-ts/engine-core/testing";
import { afterAll, describe, expect, it } from "vitest";
import { cleanup, cpuModel, LONG_PROMPT, SLOW_TEST_MS } from "../test/models";
import { ALL_KERNEL_PATHS, pathSkipReason, pathTitle } from "../test/paths";

afterAll(cleanup);

describe("TQ1_0 read in place (tq1: direct)", () => {
  for (const kernelPath of ALL_KERNEL_PATHS) {
    it.skipIf(pathSkipReason(kernelPath) !== undefined)(
      `gives the repacked model's logits bit for bit on the ${pathTitle(kernelPath)} path, without a repacked copy`,
      { timeout: SLOW_TEST_MS },
      async () => {
        const repacked = await cpuModel("tiny-tq1", { kernelPath, threads: 2 });
        const direct = await cpuModel("tiny-tq1", { kernelPath, threads: 2, tq1: "direct" });
        expect(repacked.info().repackedBytes).toBeGreaterThan(0);
        expect(direct.info().repackedBytes).toBe(0);
        expect(
          sameBits(
            await logitsBatched(direct, LONG_PROMPT),
            await logitsBatched(repacked, LONG_PROMPT),
          ),
        ).toBe(true);
        const decode = LONG_PROMPT.slice(0, 6);
        expect(
          sameBits(await logitsOneByOne(direct, decode), await logitsOneByOne(repacked, decode)),
        ).toBe(true);
        const ids = [...direct.kernelCounts().keys()];
        expect(ids.some((k) => k.endsWith(".linear.tq1_0.q8_k"))).toBe(true);
        expect(ids.some((k) => k.includes("tq1_0_as_tq2_0"))).toBe(false);
        await repacked.dispose();
        await direct.dispose();
      },
    );
  }

  it("refuses an unknown mode with a typed error", { timeout: SLOW_TEST_MS }, async () => {
    await expect(cpuModel("tiny-tq1", { threads: 2, tq1: "packed" as "direct" })).rejects.toThrow(
      /tq1 must be repack or direct, got "packed"/,
    );
  });
});
