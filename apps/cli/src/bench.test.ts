import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { llamaCpuVariantFor, llamaCpuVariantLacks } from "@bitnet-ts/crossval";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { readGgufFileSync } from "@bitnet-ts/gguf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BenchReport, bytesPerToken, formatBench } from "./commands/bench";

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

/** Whether /proc/cpuinfo gives the CPU flags (Linux). */
function procCpuFlagsReadable(): boolean {
  try {
    return /^flags\s*:/m.test(fs.readFileSync("/proc/cpuinfo", "utf8"));
  } catch {
    return false;
  }
}

/** Why this machine cannot run bench --compare-llama with a forced kernel path, or undefined. */
function llamaSkip(kernelPath: string): string | undefined {
  if (process.platform !== "linux" || process.arch !== "x64") {
    return `forced llama.cpp variants are checked on Linux x86-64, this is ${process.platform} ${process.arch}`;
  }
  if (!procCpuFlagsReadable()) {
    return "the CPU flags are not readable here";
  }
  return llamaCpuVariantLacks(llamaCpuVariantFor(kernelPath));
}

function bitnet(args: string[], env: NodeJS.ProcessEnv = process.env) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: "utf8",
    timeout: 240_000,
    env,
  });
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
    const bound = report.bound!;
    expect(bound.memory).toBe("file-mapping");
    expect(bound.tg_tps).toBeCloseTo((bound.bandwidth_gbs * 1e9) / bound.bytes_per_token, 6);
    // The bandwidth was probed around each tg repetition; each repetition is held to its own.
    expect(bound.paired).toBe(true);
    const tg = report.results.find((x) => x.test === "tg8")!;
    expect(bound.bandwidth_samples_gbs).toHaveLength(2);
    expect(bound.fraction_samples).toHaveLength(2);
    for (let i = 0; i < 2; i++) {
      expect(bound.bandwidth_samples_gbs[i]).toBeGreaterThan(0.5);
      expect(bound.fraction_samples[i]).toBeCloseTo(
        (tg.samples[i]! * bound.bytes_per_token) / (bound.bandwidth_samples_gbs[i]! * 1e9),
        9,
      );
    }
    const sorted = (a: readonly number[]) => [...a].sort((x, y) => x - y);
    const mean2 = (a: readonly number[]) => (sorted(a)[0]! + sorted(a)[1]!) / 2; // median of two
    expect(bound.bandwidth_gbs).toBeCloseTo(mean2(bound.bandwidth_samples_gbs), 9);
    expect(bound.fraction).toBeCloseTo(mean2(bound.fraction_samples), 9);
    // The engine's peak: at least the weights it maps, before the probes add a second mapping.
    const weights = readGgufFileSync(i2s).tensors.reduce((n, t) => n + t.byteSize, 0);
    expect(report.peak_rss_bytes).toBeGreaterThan(weights);
    // Whether 2 MiB entries are used depends on the kernel and the page cache; the share is a share.
    expect(report.huge_page_fraction).toBeGreaterThanOrEqual(0);
    expect(report.huge_page_fraction).toBeLessThanOrEqual(1);
    // What the load read again to get them is at most the file.
    expect(report.reread_bytes).toBeGreaterThanOrEqual(0);
    expect(report.reread_bytes).toBeLessThanOrEqual(fs.statSync(i2s).size);
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
    // ggml picked its best CPU variant for this machine, and the table says which.
    expect(r.stdout).toMatch(/llama\.cpp \(node-llama-cpp 3\.22\.1, CPU [a-z0-9]+\)\s+2\s+tg8/);
    expect(r.stdout).toMatch(
      /llama\.cpp CPU backend: ggml-cpu-[a-z0-9]+ \(ggml's pick for this CPU/,
    );
    expect(r.stdout).toMatch(
      /bitnet-ts \/ llama\.cpp \(medians, same run\): pp32 [\d.]+×, tg8 [\d.]+×/,
    );
    expect(r.stdout).toContain("anonymous memory, --no-mmap");
    expect(r.stdout).not.toContain("2 MiB pages"); // nothing is mapped
    expect(r.stdout).not.toContain("peak RSS"); // llama.cpp's model shares the process
  });

  it("-d measures each test after a depth, as llama-bench's --n-depth, next to llama.cpp", () => {
    const r = bitnet([
      ...["bench", "-m", tq2, "-p", "8", "-n", "4", "-d", "0,40", "-t", "2", "-r", "1"],
      ...["--compare-llama", "--json"],
    ]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as BenchReport;
    expect(report.results.map((x) => `${x.engine} ${x.test}`)).toEqual([
      "bitnet-ts pp8",
      "bitnet-ts tg4",
      "bitnet-ts pp8 @ d40",
      "bitnet-ts tg4 @ d40",
      "llama.cpp pp8",
      "llama.cpp tg4",
      "llama.cpp pp8 @ d40",
      "llama.cpp tg4 @ d40",
    ]);
    expect(Object.keys(report.speedup!)).toEqual(["pp8", "tg4", "pp8 @ d40", "tg4 @ d40"]);
    // Without pp tests llama.cpp still fills the depth in batches.
    const tgOnly = bitnet([
      ...["bench", "-m", tq2, "-p", "0", "-n", "2", "-d", "600", "-t", "2", "-r", "1"],
      ...["--compare-llama", "--json"],
    ]);
    expect(tgOnly.code, tgOnly.stderr).toBe(0);
    expect((JSON.parse(tgOnly.stdout) as BenchReport).results.map((x) => x.test)).toEqual([
      "tg2 @ d600",
      "tg2 @ d600",
    ]);
    expect(r.stderr).toContain("filling bitnet-ts's context with 40 tokens");
    expect(r.stderr).toContain("filling llama.cpp's context with 40 tokens");
    expect(r.stderr).toContain("depth 40: repetition 1/1 done");
  });

  it("-d counts the depth's KV cache in the decode bound, and decode attends to it", () => {
    const receipt = path.join(tmp, "depth-receipt.json");
    const r = bitnet([
      ...["bench", "-m", i2s, "-p", "0", "-n", "4", "-d", "300", "-t", "2", "-r", "1"],
      ...["--receipt", receipt, "--json"],
    ]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as BenchReport;
    expect(report.results.map((x) => x.test)).toEqual(["tg4 @ d300"]);
    // Keys and values (f16) of every layer's KV heads at the tokens' mean position past the depth.
    const file = readGgufFileSync(i2s);
    const kvWidth = 2 * 32; // tiny-i2s: 2 KV heads of 32
    const kv = 2 * 2 * kvWidth * 2 * (300 + (4 + 1) / 2);
    expect(report.bound!.bytes_per_token).toBe(bytesPerToken(file, undefined, kv));
    // Its four decode steps attended to 301-304 positions: past 256, with two threads, one
    // token's attention splits across them by its work (kernels-cpu), once per layer and step.
    const { backend } = JSON.parse(fs.readFileSync(receipt, "utf8")) as {
      backend: { kernels: { id: string; calls: number }[] };
    };
    const split = backend.kernels.find((k) => k.id.endsWith(".attention.gqa.f16kv.split"));
    expect(split?.calls).toBe(4 * 2);
  });

  // With a forced kernel path llama.cpp runs only its build for the same instruction set.
  const avx2Skip = llamaSkip("avx2");
  it.skipIf(avx2Skip !== undefined)(
    `--kernel-path avx2 --compare-llama runs llama.cpp's haswell variant and says so${avx2Skip === undefined ? "" : ` (skipped: ${avx2Skip})`}`,
    () => {
      const r = bitnet(
        [
          ...["bench", "-m", tq2, "-p", "8", "-n", "2", "-t", "1", "-r", "1"],
          ...["--compare-llama", "--kernel-path", "avx2", "--json"],
        ],
        { ...process.env, BITNET_CACHE_DIR: path.join(tmp, "cache") },
      );
      expect(r.code, r.stderr).toBe(0);
      const report = JSON.parse(r.stdout) as BenchReport;
      expect(report.backend).toBe("cpu avx2");
      expect(report.llama).toMatch(/^llama\.cpp \(node-llama-cpp 3\.22\.1, CPU haswell\)$/);
      expect(report.llama_cpu).toMatchObject({ variant: "haswell", requested: "haswell" });
      expect(report.llama_cpu!.features).toContain("AVX2");
      expect(report.llama_cpu!.features).not.toContain("AVX512");
      expect(report.llama_cpu!.library).toMatch(
        /llama-cpu-variants\/node-llama-cpp-3\.22\.1-linux-x64-haswell-[0-9a-f]+\/.*libggml-cpu-haswell\.so$/,
      );
      expect(r.stderr).toContain("only its haswell CPU variant, to match --kernel-path avx2");
    },
  );

  // A kernel path whose llama.cpp variant this CPU cannot run is refused before anything loads.
  const refused = (["amx", "avx512vnni", "avx2"] as const).find(
    (p) => process.arch === "x64" && llamaCpuVariantLacks(llamaCpuVariantFor(p)) !== undefined,
  );
  const refusedSkip =
    process.arch !== "x64"
      ? `llama.cpp's per-CPU variants are x86-64 builds, this is ${process.arch}`
      : procCpuFlagsReadable()
        ? refused === undefined
          ? "this CPU runs the llama.cpp variant of every kernel path"
          : undefined
        : "the CPU flags are not readable here";
  it("refuses --compare-llama on an I2_S file, which llama.cpp cannot load, before loading anything", () => {
    const r = bitnet([
      "bench",
      "-m",
      i2s,
      "-p",
      "8",
      "-n",
      "2",
      "-t",
      "1",
      "-r",
      "1",
      "--compare-llama",
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("[CROSSVAL_LLAMA_CANNOT_LOAD]");
    expect(r.stderr).toMatch(/llama\.cpp cannot load [^:]+: it holds I2_S tensors/);
    expect(r.stderr).toContain("bitnet quantize <in.gguf> <out.gguf> tq2_0");
    expect(r.stderr).not.toContain("bitnet bench: loading");
  });

  it.skipIf(refusedSkip !== undefined)(
    `refuses a kernel path whose llama.cpp variant this CPU cannot run${refusedSkip === undefined ? ` (${refused})` : ` (skipped: ${refusedSkip})`}`,
    () => {
      const r = bitnet(
        [
          ...["bench", "-m", tq2, "-p", "8", "-n", "2", "-t", "1", "-r", "1"],
          ...["--compare-llama", "--kernel-path", refused!],
        ],
        { ...process.env, BITNET_CACHE_DIR: path.join(tmp, "cache") },
      );
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(
        `cannot run llama.cpp's "${llamaCpuVariantFor(refused!)}" CPU backend: this CPU lacks`,
      );
      expect(r.stderr).toContain("[CROSSVAL_LLAMA_CPU_VARIANT_UNSUPPORTED]");
      expect(r.stderr).not.toContain("bitnet bench: loading"); // refused before loading the model
    },
  );

  it("on a GPU backend, prints the GPU's copy bandwidth, the decode bound it gives and the GPU memory", () => {
    const report: BenchReport = {
      model: "/m/bench-i2s.gguf",
      model_bytes: 1.2e9,
      params: 2.4e9,
      backend: "cuda",
      threads: 1,
      mmap: true,
      huge_page_fraction: null,
      reread_bytes: null,
      load_ms: 900,
      peak_rss_bytes: null,
      results: [
        {
          engine: "bitnet-ts",
          test: "tg128",
          tps_mean: 1500,
          tps_std: 1,
          tps_median: 1500,
          reps: 3,
          samples: [1500],
        },
      ],
      bound: {
        bandwidth_gbs: 4300,
        memory: "gpu",
        bytes_per_token: 1.2e9,
        tg_tps: 3583.3,
        fraction: 1500 / 3583.3,
        paired: false,
        bandwidth_samples_gbs: [],
        fraction_samples: [],
      },
      bandwidth: null,
      gpu: { copy_gbs: 4300, weight_bytes: 1.2e9, scratch_bytes: 5e7, kv_bytes: 1e7 },
      llama: null,
      llama_cpu: null,
      speedup: null,
      head_accuracy: null,
    };
    const text = formatBench(report, 1.2e9);
    expect(text).toContain("GPU copy bandwidth: 4300 GB/s");
    expect(text).toMatch(
      /decode bound: 1\.200 GB read per token at 4300 GB\/s = 3583 t\/s; measured 42% of it/,
    );
    expect(text).toMatch(/GPU memory: weights .* = 1\.050 × the weights/);
    expect(text).not.toContain("read bandwidth (");
  });

  it("says what the load read again, and hints at small pages only when they are more than the header's", () => {
    const report = (model_bytes: number, share: number, reread: number): BenchReport => ({
      model: "/m/bench-i2s.gguf",
      model_bytes,
      params: 2.4e9,
      backend: "cpu",
      threads: 2,
      mmap: true,
      huge_page_fraction: share,
      reread_bytes: reread,
      load_ms: 150,
      peak_rss_bytes: null,
      results: [],
      bound: null,
      bandwidth: null,
      gpu: null,
      llama: null,
      llama_cpu: null,
      speedup: null,
      head_accuracy: null,
    });
    const line = (r: BenchReport) =>
      formatBench(r, r.model_bytes)
        .split("\n")
        .find((l) => l.startsWith("weights mapped in 2 MiB pages"));
    // After reclaim: a quarter of a 1.2 GB file in small pages.
    expect(line(report(1.19e9, 0.72, 0))).toMatch(
      /^weights mapped in 2 MiB pages: 72%; the page cache holds the rest .*dd if=FILE iflag=nocache count=0.*--no-mmap/,
    );
    // A healthy load: what reading the header left in small pages, and ranges read again.
    expect(line(report(1.19e9, 0.98, 3.9e6))).toBe(
      "weights mapped in 2 MiB pages: 98% (3.9 MB of partly cached 2 MiB ranges read again to get them)",
    );
    // A small model whose header is a third of it: no hint.
    expect(line(report(74e6, 0.68, 0))).toBe("weights mapped in 2 MiB pages: 68%");
  });

  it("--kernels asks for --backend cuda, and says why it cannot run without a GPU", () => {
    const noBackend = bitnet(["bench", "--kernels"]);
    expect(noBackend.code).not.toBe(0);
    expect(noBackend.stderr).toMatch(/--kernels measures the CUDA kernels: add --backend cuda/);
    const cuda = bitnet(["bench", "--kernels", "--backend", "cuda", "--json"]);
    if (cuda.code === 0) {
      const table = JSON.parse(cuda.stdout) as { kernels: { oursGbs: number }[] };
      expect(table.kernels).toHaveLength(4);
      expect(table.kernels[0]!.oursGbs).toBeGreaterThan(0);
    } else {
      expect(cuda.stderr).toMatch(/CUDA/);
      expect(cuda.stderr).not.toMatch(/at .*\.js:\d+/);
    }
  });

  it("counts a tied head once and a quantized head at its own size", () => {
    const file = readGgufFileSync(i2s);
    const all = file.tensors.reduce((n, t) => n + t.byteSize, 0);
    expect(bytesPerToken(file, undefined, 100)).toBe(all + 100);
    const embd = file.tensor("token_embd.weight");
    expect(bytesPerToken(file, "q8_0", 0)).toBe(
      all - embd.byteSize + (embd.elementCount / 32) * 34,
    );
    expect(bytesPerToken(file, "q6_k", 0)).toBe(
      all - embd.byteSize + (embd.elementCount / 256) * 210,
    );
  });

  it("--head q6_k measures the quantized head against the file's in the same run", () => {
    const r = bitnet([
      ...["bench", "-m", i2s, "-p", "16", "-n", "4", "-t", "2", "-r", "1"],
      ...["--backend", "cpu", "--head", "q6_k", "--json"],
    ]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as BenchReport;
    const a = report.head_accuracy!;
    expect(a.head).toBe("q6_k");
    expect(a.reference).toBe("F16");
    expect(a.positions).toBeGreaterThan(50);
    expect(a.top1).toBeGreaterThan(0.9);
    expect(a.kl_mean).toBeGreaterThan(0); // the heads differ…
    expect(a.kl_mean).toBeLessThan(0.01); // …by little
    expect(a.kl_max).toBeGreaterThanOrEqual(a.kl_mean);
    expect(a.cosine_min).toBeGreaterThan(0.99);
    // The table prints it too.
    const text = bitnet([
      ...["bench", "-m", i2s, "-p", "16", "-n", "4", "-t", "2", "-r", "1"],
      ...["--backend", "cpu", "--head", "q8_0"],
    ]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(
      /head q8_0 vs the file's F16 head, \d+ positions .*top-1 agreement/,
    );
  });

  it("rejects an unknown --head type", () => {
    const r = bitnet(["bench", "-m", i2s, "--head", "q4_0"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("--head must be one of q8_0, q6_k");
  });

  it("rejects bad flags with a clear message", () => {
    const r = bitnet(["bench", "-m", i2s, "-p", "12x"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("--n-prompt must be an integer");
  });
});
