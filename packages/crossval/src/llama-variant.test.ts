/**
 * Forcing llama.cpp's CPU variant: the kernel-path → variant mapping, reading back which variant
 * runs, and, on this machine, a haswell-only copy of node-llama-cpp that really runs haswell on
 * tiny-tq2, and a variant this CPU cannot run refused with the reason. This file loads llama.cpp
 * once (the haswell copy): a process keeps the ggml libraries it loaded first.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { afterAll, describe, expect, it } from "vitest";
import { LlamaCpuVariantUnsupportedError } from "./errors";
import { identifyLlamaCpuBackend, llamaCpuVariantMismatch, openLlamaCpu } from "./llama";
import { openLlamaBench } from "./llama-bench";
import {
  GGML_X86_CPU_VARIANTS,
  installedNodeLlamaCpp,
  isaFeaturesOf,
  LLAMA_CPU_VARIANT_FOR_KERNEL_PATH,
  llamaCpuVariantFor,
  llamaCpuVariantLacks,
  mappedLlamaCpuVariants,
  prebuiltCpuBinsDir,
  prepareLlamaVariantCopy,
  procCpuFlags,
  shippedLlamaCpuVariants,
  variantFromSystemInfo,
} from "./llama-variant";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "crossval-variant-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** /proc/cpuinfo flags of CPUs our kernel paths run on. */
const HASWELL = ["sse4_2", "avx", "f16c", "fma", "avx2", "bmi2"];
const AVX512 = ["avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"];
const CASCADE_LAKE = new Set([...HASWELL, ...AVX512, "avx512_vnni"]);
const ICE_LAKE = new Set([...CASCADE_LAKE, "avx512vbmi"]);
const ZEN4 = new Set([...ICE_LAKE, "avx512_bf16"]);
const SAPPHIRE_RAPIDS = new Set([...ZEN4, "amx_tile", "amx_int8", "amx_bf16"]);

/** llama_print_system_info as node-llama-cpp 3.22.1 printed it for these variants. */
const SYSTEM_INFO: Record<string, string> = {
  x64: "CPU : LLAMAFILE = 1 | REPACK = 1 | ",
  haswell:
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | REPACK = 1 | ",
  cascadelake:
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | LLAMAFILE = 1 | REPACK = 1 | ",
  zen4: "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | LLAMAFILE = 1 | REPACK = 1 | ",
  alderlake:
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | REPACK = 1 | ",
};

describe("kernel path → llama.cpp CPU variant", () => {
  it("maps each forced path to the build for the same instruction set", () => {
    expect(LLAMA_CPU_VARIANT_FOR_KERNEL_PATH).toEqual({
      scalar: "x64",
      avx2: "haswell",
      avxvnni: "alderlake",
      avx512vnni: "cascadelake",
      amx: "sapphirerapids",
    });
    expect(llamaCpuVariantFor("avx2")).toBe("haswell");
    expect(() => llamaCpuVariantFor("neon")).toThrow(LlamaCpuVariantUnsupportedError);
    expect(() => llamaCpuVariantFor("neon")).toThrow(/kernel path "neon"/);
    const features = (v: string) => GGML_X86_CPU_VARIANTS[v]!;
    expect(features("x64")).toEqual([]);
    expect(features("haswell")).toContain("AVX2");
    expect(features("haswell").some((f) => f.startsWith("AVX512") || f.includes("VNNI"))).toBe(
      false,
    );
    expect(features("cascadelake")).toEqual(expect.arrayContaining(["AVX512", "AVX512_VNNI"]));
    expect(features("cascadelake")).not.toContain("AVX512_VBMI");
    expect(features("cascadelake")).not.toContain("AVX512_BF16");
    expect(features("sapphirerapids")).toContain("AMX_INT8");
  });

  it("picks variants that run wherever the matching kernel path runs", () => {
    // Our avx512vnni path runs on Cascade Lake: so must its llama.cpp variant (icelake would not).
    expect(llamaCpuVariantLacks("cascadelake", CASCADE_LAKE, "x64")).toBeUndefined();
    expect(llamaCpuVariantLacks("icelake", CASCADE_LAKE, "x64")).toBe(
      "this CPU lacks AVX-512 VBMI",
    );
    expect(llamaCpuVariantLacks("zen4", ICE_LAKE, "x64")).toBe("this CPU lacks AVX-512 BF16");
    expect(llamaCpuVariantLacks("haswell", new Set(HASWELL), "x64")).toBeUndefined();
    expect(llamaCpuVariantLacks("sapphirerapids", SAPPHIRE_RAPIDS, "x64")).toBeUndefined();
    expect(llamaCpuVariantLacks("x64", new Set(), "x64")).toBeUndefined();
  });

  it("names what the CPU lacks, and refuses other architectures and unknown variants", () => {
    expect(llamaCpuVariantLacks("sapphirerapids", ZEN4, "x64")).toBe(
      "this CPU lacks AMX-TILE, AMX-INT8",
    );
    expect(llamaCpuVariantLacks("haswell", new Set(["sse4_2", "avx"]), "x64")).toBe(
      "this CPU lacks F16C, FMA, AVX2, BMI2",
    );
    expect(llamaCpuVariantLacks("haswell", new Set(HASWELL), "arm64")).toMatch(/x86-64.*arm64/);
    expect(llamaCpuVariantLacks("haswell", undefined, "x64")).toBeUndefined(); // ggml decides
    expect(llamaCpuVariantLacks("pentium", new Set(), "x64")).toMatch(/no x86-64 CPU variant/);
  });
});

describe("which variant runs", () => {
  it("identifies every variant from the features llama.cpp reports", () => {
    for (const [variant, info] of Object.entries(SYSTEM_INFO)) {
      expect(variantFromSystemInfo(info), variant).toBe(variant);
    }
    expect(isaFeaturesOf(SYSTEM_INFO["haswell"]!)).toEqual([
      "AVX",
      "AVX2",
      "BMI2",
      "F16C",
      "FMA",
      "SSE3",
      "SSSE3",
    ]);
    // No two variants report the same features, so the features alone name the variant.
    const seen = new Map<string, string>();
    for (const [variant, features] of Object.entries(GGML_X86_CPU_VARIANTS)) {
      const info = `CPU : ${features
        .flatMap((f) => (f === "SSE42" ? ["SSE3", "SSSE3"] : f === "AMX_TILE" ? [] : [f]))
        .map((f) => `${f} = 1 | `)
        .join("")}REPACK = 1 |`;
      expect(variantFromSystemInfo(info), variant).toBe(variant);
      const key = isaFeaturesOf(info).join(" ");
      expect(seen.get(key), `${variant} vs ${seen.get(key)}`).toBeUndefined();
      seen.set(key, variant);
    }
    expect(variantFromSystemInfo("Metal : EMBED_LIBRARY = 1 |")).toBeUndefined();
  });

  it("reads the mapped ggml-cpu libraries from /proc/self/maps lines", () => {
    const maps = [
      "7f00-7f10 r--p 00000000 fd:00 1 /x/bins/linux-x64/libggml-cpu-haswell.so",
      "7f10-7f20 r-xp 00010000 fd:00 1 /x/bins/linux-x64/libggml-cpu-haswell.so",
      "7f20-7f30 r--p 00000000 fd:00 2 /x/bins/linux-x64/libggml-base.so",
      "7f30-7f40 r--p 00000000 fd:00 3 /y/with space/ggml-cpu-zen4.dll",
    ].join("\n");
    expect(mappedLlamaCpuVariants(maps)).toEqual([
      { variant: "haswell", path: "/x/bins/linux-x64/libggml-cpu-haswell.so" },
      { variant: "zen4", path: "/y/with space/ggml-cpu-zen4.dll" },
    ]);
    expect(mappedLlamaCpuVariants(null)).toBeNull();
  });

  it("reports the mapped library's variant, else the one the features name", () => {
    const lib = { variant: "zen4", path: "/nm/bins/linux-x64/libggml-cpu-zen4.so" };
    expect(identifyLlamaCpuBackend(SYSTEM_INFO["zen4"]!, null, [lib])).toEqual({
      variant: "zen4",
      requested: null,
      features: isaFeaturesOf(SYSTEM_INFO["zen4"]!),
      library: lib.path,
    });
    expect(identifyLlamaCpuBackend(SYSTEM_INFO["haswell"]!, "haswell", null)).toMatchObject({
      variant: "haswell",
      library: null,
    });
    expect(identifyLlamaCpuBackend("CPU : AVX512_FP16 = 1 | AVX = 1 |", null, [])).toMatchObject({
      variant: null,
      features: ["AVX"],
    });
  });

  it("accepts a forced variant only when the library and the features both say so", () => {
    const dir = "/cache/bins/linux-x64";
    const own = { variant: "haswell", path: `${dir}/libggml-cpu-haswell.so` };
    const info = SYSTEM_INFO["haswell"]!;
    expect(llamaCpuVariantMismatch("haswell", dir, info, [own])).toBeUndefined();
    expect(llamaCpuVariantMismatch("haswell", dir, info, null)).toBeUndefined(); // no maps: features
    const other = { variant: "zen4", path: "/nm/bins/linux-x64/libggml-cpu-zen4.so" };
    expect(llamaCpuVariantMismatch("haswell", dir, SYSTEM_INFO["zen4"]!, [other])).toMatchObject({
      loaded: "zen4",
      detail: expect.stringMatching(/libggml-cpu-zen4\.so.*fresh process/),
    });
    expect(llamaCpuVariantMismatch("haswell", dir, info, [own, other])?.detail).toMatch(
      /2 ggml CPU libraries/,
    );
    expect(llamaCpuVariantMismatch("haswell", dir, SYSTEM_INFO["zen4"]!, [own])).toMatchObject({
      loaded: "zen4",
      detail: expect.stringMatching(/ggml's zen4 build/),
    });
    // A haswell library from another folder (the full set) is not the private copy's.
    const elsewhere = { variant: "haswell", path: "/nm/bins/linux-x64/libggml-cpu-haswell.so" };
    expect(llamaCpuVariantMismatch("haswell", dir, info, [elsewhere])).toBeDefined();
  });
});

/** Why this machine cannot run the node-llama-cpp checks below, or undefined. */
function nodeLlamaCppSkip(): string | undefined {
  if (process.platform !== "linux" || process.arch !== "x64") {
    return `node-llama-cpp's per-CPU variants are checked on Linux x86-64, this is ${process.platform} ${process.arch}`;
  }
  try {
    const bins = prebuiltCpuBinsDir(installedNodeLlamaCpp());
    return shippedLlamaCpuVariants(bins).includes("haswell")
      ? undefined
      : `the installed prebuilt binaries (${bins}) have no per-CPU variants`;
  } catch (error) {
    return (error as Error).message;
  }
}
const skip = nodeLlamaCppSkip();
const haswellSkip = skip ?? llamaCpuVariantLacks("haswell");

describe("on this machine", () => {
  it.skipIf(haswellSkip !== undefined)(
    `a haswell-only copy of node-llama-cpp runs haswell on tiny-tq2${haswellSkip === undefined ? "" : ` (skipped: ${haswellSkip})`}`,
    async () => {
      const copy = prepareLlamaVariantCopy("haswell", path.join(tmp, "variants"));
      expect(shippedLlamaCpuVariants(copy.binsDir)).toEqual(["haswell"]);
      expect(shippedLlamaCpuVariants(copy.sourceBinsDir).length).toBeGreaterThan(1);
      // Made once: a second call finds it; a damaged one is made again.
      expect(prepareLlamaVariantCopy("haswell", path.join(tmp, "variants"))).toEqual(copy);
      fs.rmSync(path.join(copy.binsDir, "llama-addon.node"));
      expect(prepareLlamaVariantCopy("haswell", path.join(tmp, "variants"))).toEqual(copy);
      expect(fs.existsSync(path.join(copy.binsDir, "llama-addon.node"))).toBe(true);

      const model = path.join(tmp, "tiny-tq2.gguf");
      await writeFixture(PRESETS["tiny-tq2"]!, model);
      const session = await openLlamaBench(model, {
        threads: 1,
        contextSize: 32,
        cpuVariant: "haswell",
        variantCacheDir: path.join(tmp, "variants"),
      });
      try {
        expect(session.cpu.variant).toBe("haswell");
        expect(session.cpu.requested).toBe("haswell");
        expect(session.cpu.features).toContain("AVX2");
        expect(session.cpu.features).not.toContain("AVX512");
        expect(session.cpu.library).toBe(path.join(copy.binsDir, "libggml-cpu-haswell.so"));
        expect(session.label).toMatch(/^llama\.cpp \(node-llama-cpp [\d.]+, CPU haswell\)$/);
        // The only ggml CPU library in the process is the copy's haswell.
        expect(mappedLlamaCpuVariants()).toEqual([
          { variant: "haswell", path: path.join(copy.binsDir, "libggml-cpu-haswell.so") },
        ]);
        expect(await session.prefill([1, 2, 3, 4, 5, 6, 7, 8])).toBeGreaterThan(0);
        expect(await session.decode([9, 10])).toBeGreaterThan(0);
      } finally {
        await session.dispose();
      }
    },
  );

  const cpuFlags = procCpuFlags();
  const unrunnable =
    skip === undefined && cpuFlags !== undefined
      ? Object.keys(GGML_X86_CPU_VARIANTS).find(
          (v) => llamaCpuVariantLacks(v, cpuFlags) !== undefined,
        )
      : undefined;
  const refusalSkip =
    skip ??
    (cpuFlags === undefined
      ? "the CPU flags are not readable here"
      : unrunnable === undefined
        ? "this CPU runs every ggml variant"
        : undefined);
  it.skipIf(refusalSkip !== undefined)(
    `refuses a variant this CPU cannot run, with the reason${refusalSkip === undefined ? ` (${unrunnable})` : ` (skipped: ${refusalSkip})`}`,
    async () => {
      const error = await openLlamaCpu({
        cpuVariant: unrunnable!,
        variantCacheDir: path.join(tmp, "variants"),
      }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LlamaCpuVariantUnsupportedError);
      const refused = error as LlamaCpuVariantUnsupportedError;
      expect(refused.code).toBe("CROSSVAL_LLAMA_CPU_VARIANT_UNSUPPORTED");
      expect(refused.variant).toBe(unrunnable);
      expect(refused.reason).toBe(llamaCpuVariantLacks(unrunnable!, cpuFlags));
      expect(refused.message).toMatch(/this CPU lacks/);
    },
  );
});
