// The read-bandwidth probe behind `bitnet bench`'s decode bound, on every kernel path the CPU
// offers: each repetition reads the region in each of the path's ways (plain loads and two
// software-prefetch patterns; each path has its own streaming loops) and reports the fastest.
// Speed is not asserted here (benchmarks measure it); what is: every loop runs to completion on
// every path, over anonymous memory and a file mapping, and bad requests are refused with a
// message instead of reading out of bounds.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ALL_KERNEL_PATHS, pathSkipReason } from "../test/paths";
import { measureReadBandwidth } from "./bandwidth";

let dir: string;
let file: string;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "bitnet-bandwidth-"));
  file = path.join(dir, "region.bin");
  fs.writeFileSync(file, Buffer.alloc(3 << 20, 7));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("measureReadBandwidth", () => {
  for (const kernelPath of ALL_KERNEL_PATHS.filter((p) => p !== "amx")) {
    const skip = pathSkipReason(kernelPath);
    it.skipIf(skip !== undefined)(
      `reads anonymous memory and a file mapping on ${kernelPath}${skip ? ` (skipped: ${skip})` : ""}`,
      async () => {
        for (const where of [{}, { path: file }]) {
          const result = await measureReadBandwidth({
            ...where,
            threads: 2,
            reps: 3,
            kernelPath,
            bytes: 2 << 20,
          });
          expect(result.samples).toHaveLength(3);
          for (const gbs of result.samples) {
            expect(Number.isFinite(gbs) && gbs > 0).toBe(true);
          }
          expect(result.bestGbs).toBe(Math.max(...result.samples));
          expect(result.bestGbs).toBeGreaterThanOrEqual(result.medianGbs);
        }
      },
    );
  }

  it("refuses a region outside the file, too small a region and an unknown path", async () => {
    await expect(measureReadBandwidth({ path: file, threads: 1, bytes: 4 << 20 })).rejects.toThrow(
      /outside/,
    );
    await expect(measureReadBandwidth({ threads: 1, bytes: 4096 })).rejects.toThrow(/1 MiB/);
    await expect(
      measureReadBandwidth({ threads: 1, bytes: 2 << 20, kernelPath: "no-such-path" }),
    ).rejects.toThrow(/not available/);
  });
});
