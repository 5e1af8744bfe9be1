import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { readGgufFileSync } from "@bitnet-ts/gguf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BenchReport, bytesPerToken } from "./commands/bench";

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(here, "../dist/bitnet.js");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bitnet-cli-bench-"));
const i2s = path.join(tmp, "tiny-i2s.gguf");
const tq2 = path.join(tmp, "tiny-tq2.gguf");

beforeAll(async () => {
  await writeFixture(PRESETS["tiny-i2s"]!, i2s);
  await writeFixture(PRESETS["tiny-tq2"]!, tq2);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function bitnet(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 240_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("bitnet bench", () => {
  it("prints one JSON object with the tests, the measured bandwidth and the decode bound", () => {
    const r = bitnet([
      "bench",
      "-m",
      i2s,
      "-p",
      "32",
      "-n",
      "8",
      "-t",
      "2",
      "-r",
      "2",
      "--backend",
      "cpu",
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as BenchReport;
    expect(report.threads).toBe(2);
    expect(report.results.map((x) => `${x.engine} ${x.test}`)).toEqual([
      "bitnet-ts pp32",
      "bitnet-ts tg8",
    ]);
    for (const x of report.results) {
      expect(x.reps).toBe(2);
      expect(x.samples).toHaveLength(2);
      expect(x.tps_mean).toBeGreaterThan(0);
      expect(Number.isFinite(x.tps_std)).toBe(true);
    }
    expect(report.bandwidth!.file_mapping_gbs).toBeGreaterThan(0.5);
    expect(report.bound!.memory).toBe("file-mapping");
    expect(report.bound!.bandwidth_gbs).toBe(report.bandwidth!.file_mapping_gbs);
    expect(report.bound!.tg_tps).toBeCloseTo(
      (report.bound!.bandwidth_gbs * 1e9) / report.bound!.bytes_per_token,
      6,
    );
    // The engine's peak: at least the weights it maps, before the probes add a second mapping.
    const weights = readGgufFileSync(i2s).tensors.reduce((n, t) => n + t.byteSize, 0);
    expect(report.peak_rss_bytes).toBeGreaterThan(weights);
    // Whether 2 MiB entries are used depends on the kernel and the page cache; the share is a share.
    expect(report.huge_page_fraction).toBeGreaterThanOrEqual(0);
    expect(report.huge_page_fraction).toBeLessThanOrEqual(1);
    // Progress goes to stderr, never into the JSON.
    expect(r.stderr).toContain("bitnet bench: repetition 2/2 done");
  });

  it("compares with llama.cpp on the same file in the same run, as a llama-bench table", () => {
    const r = bitnet([
      "bench",
      "-m",
      tq2,
      "-p",
      "32",
      "-n",
      "8",
      "-t",
      "2",
      "-r",
      "1",
      "--compare-llama",
      "--no-mmap",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/model\s+size\s+params\s+backend\s+threads\s+test\s+t\/s\s+median/);
    expect(r.stdout).toMatch(/bitnet-ts cpu \S+\s+2\s+pp32/);
    expect(r.stdout).toMatch(/llama\.cpp \(node-llama-cpp 3\.22\.1, CPU\)\s+2\s+tg8/);
    expect(r.stdout).toMatch(
      /bitnet-ts \/ llama\.cpp \(medians, same run\): pp32 [\d.]+×, tg8 [\d.]+×/,
    );
    expect(r.stdout).toContain("anonymous memory, --no-mmap");
    expect(r.stdout).not.toContain("2 MiB pages"); // nothing is mapped
    expect(r.stdout).not.toContain("peak RSS"); // llama.cpp's model shares the process
  });

  it("counts a tied head once and the Q8_0 head at its own size", () => {
    const file = readGgufFileSync(i2s);
    const all = file.tensors.reduce((n, t) => n + t.byteSize, 0);
    expect(bytesPerToken(file, false, 100)).toBe(all + 100);
    const embd = file.tensor("token_embd.weight");
    expect(bytesPerToken(file, true, 0)).toBe(all - embd.byteSize + (embd.elementCount / 32) * 34);
  });

  it("rejects bad flags with a clear message", () => {
    const r = bitnet(["bench", "-m", i2s, "-p", "12x"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("--n-prompt must be an integer");
  });
});
