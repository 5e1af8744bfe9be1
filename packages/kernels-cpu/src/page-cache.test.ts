/**
 * A mapped model's 2 MiB ranges that the page cache holds only in part (the kernel reclaimed the
 * rest) are dropped and read again before they are faulted in, so they come back as 2 MiB folios
 * instead of small ones around the pages still cached (file_map.h, drop_partly_cached_ranges).
 * The page cache is set up with python3's os.posix_fadvise and pread, as a user's kernel would
 * leave it; where the file system or kernel gives no 2 MiB folios at all, the test says so and
 * skips.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { readModelDescription } from "@bitnet-ts/engine-core";
import { logitsBatched, sameBits } from "@bitnet-ts/engine-core/testing";
import { afterAll, describe, expect, it } from "vitest";
import { cleanup, fixture, LONG_PROMPT, SLOW_TEST_MS, tmp } from "../test/models";
import { CpuBackend } from "./backend";

afterAll(cleanup);

const MiB = 2 ** 20;

/** Runs a python3 snippet with the file's path as sys.argv[1]; false when python3 is missing. */
function python(code: string, file: string): boolean {
  const r = spawnSync("python3", ["-c", code, file], { encoding: "utf8" });
  if (r.error !== undefined) {
    return false;
  }
  if (r.status !== 0) {
    throw new Error(`python3 failed: ${r.stderr}`);
  }
  return true;
}

// Drops the whole file from the page cache (pages no process maps).
const EVICT = `
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
`;

// Then reads one 4 KiB page from the middle of every 2 MiB range, without readahead: each range
// ends up cached in part, in a small folio, as reclaim leaves a file it took most of.
const CACHE_ONE_PAGE_PER_RANGE = `${EVICT}
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
size = os.fstat(fd).st_size
for off in range(1 << 20, size - 4096, 2 << 20):
    os.pread(fd, 4096, off)
`;

async function load(file: string) {
  const description = await readModelDescription(file, { tensorData: false });
  return new CpuBackend({ threads: 2, mmap: true }).compile(description, { contextLength: 64 });
}

describe("a model file the page cache holds in part", () => {
  it("is read back in 2 MiB folios where its ranges were partly cached, with the same logits", {
    timeout: SLOW_TEST_MS,
  }, async (ctx) => {
    if (process.platform !== "linux") {
      ctx.skip("2 MiB page-cache folios and their accounting are Linux's");
    }
    // A private copy, so that no other test's mapping keeps its pages cached.
    const file = path.join(tmp, "page-cache-tiny-i2s.gguf");
    fs.copyFileSync(await fixture("tiny-i2s"), file);
    const fd = fs.openSync(file, "r+");
    fs.fsyncSync(fd); // dirty pages are never dropped
    fs.closeSync(fd);

    if (!python(EVICT, file)) {
      ctx.skip("python3 is needed to set up the page cache (os.posix_fadvise)");
    }
    const cold = await load(file);
    const coldShare = cold.info().hugeMappedBytes / cold.info().mappedBytes;
    const coldLogits = await logitsBatched(cold, LONG_PROMPT);
    await cold.dispose();
    if (coldShare < 0.1) {
      ctx.skip(
        `this kernel and file system cache the file in small folios even when it is read in whole (${(100 * coldShare).toFixed(0)}% in 2 MiB pages)`,
      );
    }

    python(CACHE_ONE_PAGE_PER_RANGE, file);
    const partly = await load(file);
    const ranges = Math.floor(fs.statSync(file).size / (2 * MiB));
    // The ranges past the header (which reading the description caches in whole) held one cached
    // page each, which was dropped: at most one page per range.
    expect(partly.info().rereadBytes).toBeGreaterThan(0);
    expect(partly.info().rereadBytes).toBeLessThanOrEqual(ranges * 64 * 1024);
    // Without the drop, each of those ranges was mapped in 4 KiB pages (0% of the tiny-i2s copy,
    // against 23% loaded cold: the header's ranges are cached by reading it, in small folios).
    expect(partly.info().hugeMappedBytes / partly.info().mappedBytes).toBeGreaterThanOrEqual(
      coldShare - 0.05,
    );
    expect(sameBits(await logitsBatched(partly, LONG_PROMPT), coldLogits)).toBe(true);
    await partly.dispose();

    // A fully cached file is left as it is.
    const warm = await load(file);
    expect(warm.info().rereadBytes).toBe(0);
    await warm.dispose();
  });
});
