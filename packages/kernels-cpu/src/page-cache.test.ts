/**
 * A mapped model's 2 MiB ranges that the page cache holds only in part (the kernel reclaimed the
 * rest) are dropped and read again before they are faulted in, so they come back as 2 MiB folios
 * instead of small ones around the pages still cached (file_map.h, map_file),
 * and ranges cached in whole (the header, read just before) are faulted after the others, so
 * that their readahead marks do not read the uncached ranges in small folios too. The page cache is set up with python3's os.posix_fadvise and pread, as a user's kernel would
 * leave it; where the file system or kernel gives no 2 MiB folios at all, the test says so and
 * skips.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { type ModelDescription, readModelDescription } from "@bitnet-ts/engine-core";
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

async function load(file: string, description?: ModelDescription) {
  const d = description ?? (await readModelDescription(file, { tensorData: false }));
  return new CpuBackend({ threads: 2, mmap: true }).compile(d, { contextLength: 64 });
}

const share = (model: { info(): { hugeMappedBytes: number; mappedBytes: number } }) =>
  model.info().hugeMappedBytes / model.info().mappedBytes;

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
    const size = fs.statSync(file).size;

    // What this kernel and file system give a file nothing has read: the description is read
    // first, so that loading reads no byte with read().
    const description = await readModelDescription(file, { tensorData: false });
    if (!python(EVICT, file)) {
      ctx.skip("python3 is needed to set up the page cache (os.posix_fadvise)");
    }
    const uncached = await load(file, description);
    const best = share(uncached);
    const logits = await logitsBatched(uncached, LONG_PROMPT);
    await uncached.dispose();
    if (best < 0.5) {
      ctx.skip(
        `this kernel and file system cache the file in small folios even when it is read in whole (${(100 * best).toFixed(0)}% in 2 MiB pages)`,
      );
    }

    // Reading the header with read() caches its ranges (and readahead's) in small folios; the
    // ranges after them are still read in 2 MiB folios (they were not when the header's ranges
    // were faulted first: 23% here).
    python(EVICT, file);
    const cold = await load(file);
    const header = description.file.dataOffset;
    expect(share(cold)).toBeGreaterThan(best - (header + 24 * MiB) / size);
    await cold.dispose();

    python(CACHE_ONE_PAGE_PER_RANGE, file);
    const partly = await load(file);
    // The ranges past the header's held one cached page each, which was dropped: at most one
    // page per range.
    expect(partly.info().rereadBytes).toBeGreaterThan(0);
    expect(partly.info().rereadBytes).toBeLessThanOrEqual((size / (2 * MiB)) * 64 * 1024);
    // Without the drop, each of those ranges was mapped in 4 KiB pages (0% of this copy).
    expect(share(partly)).toBeGreaterThan(best - (header + 24 * MiB) / size);
    expect(sameBits(await logitsBatched(partly, LONG_PROMPT), logits)).toBe(true);
    await partly.dispose();

    // A fully cached file is left as it is.
    const warm = await load(file);
    expect(warm.info().rereadBytes).toBe(0);
    await warm.dispose();
  });
});
