/**
 * Which of llama.cpp's per-CPU builds runs, and forcing one.
 *
 * node-llama-cpp's prebuilt CPU backend for x86-64 is one set of shared libraries plus a
 * `libggml-cpu-<variant>.so` (`ggml-cpu-<variant>.dll` on Windows) per CPU generation. At start
 * ggml lists every `*ggml-cpu-*` library in the folder next to `llama-addon.node`, asks each for
 * a score (0 when this CPU lacks one of the features it was built with) and keeps the best.
 * There is no option or environment variable that names the variant, and node-llama-cpp has no
 * option for another binaries folder: it looks in `<its package>/bins/<platform>-<arch>/`, then
 * in its `@node-llama-cpp/<platform>-<arch>` package.
 *
 * So a forced variant runs from a private copy of node-llama-cpp (hard links where the file
 * system allows, copies otherwise) whose `bins/<platform>-<arch>/` holds the prebuilt binaries
 * with only that one `ggml-cpu-*` library. ggml then has exactly one candidate: it loads it or,
 * when the CPU cannot run it, none (and node-llama-cpp's binary test fails). Its dependencies
 * are linked to the installed ones; the `@node-llama-cpp/*` packages are not, so a copy that
 * were incomplete fails instead of quietly using the full set.
 *
 * What ran is read back twice after loading: the `ggml-cpu-*` library the process has mapped
 * (Linux, /proc/self/maps) and the instruction-set features llama.cpp reports for its CPU
 * backend (`llama_print_system_info`), which identify every variant uniquely.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import { LlamaCpuVariantUnsupportedError, ReferenceUnavailableError } from "./errors";

/** ggml's build-time CPU feature names (GGML_<NAME> in ggml/src/CMakeLists.txt). */
export type GgmlCpuFeature =
  | "SSE42"
  | "AVX"
  | "F16C"
  | "FMA"
  | "AVX2"
  | "BMI2"
  | "AVX_VNNI"
  | "AVX512"
  | "AVX512_VBMI"
  | "AVX512_VNNI"
  | "AVX512_BF16"
  | "AMX_TILE"
  | "AMX_INT8";

/** What every variant from haswell up is built with; the later ones add to it. */
const HASWELL: readonly GgmlCpuFeature[] = ["SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2"];
const SKYLAKEX: readonly GgmlCpuFeature[] = [...HASWELL, "AVX512"];
const ZEN4: readonly GgmlCpuFeature[] = [...SKYLAKEX, "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16"];

/**
 * The x86-64 variants of ggml's GGML_CPU_ALL_VARIANTS build (ggml/src/CMakeLists.txt, the
 * llama.cpp release node-llama-cpp 3.22.1 ships) and the features each is compiled for.
 */
export const GGML_X86_CPU_VARIANTS: Readonly<Record<string, readonly GgmlCpuFeature[]>> = {
  x64: [],
  sse42: ["SSE42"],
  sandybridge: ["SSE42", "AVX"],
  ivybridge: ["SSE42", "AVX", "F16C"],
  piledriver: ["SSE42", "AVX", "F16C", "FMA"],
  haswell: HASWELL,
  skylakex: SKYLAKEX,
  cannonlake: [...SKYLAKEX, "AVX512_VBMI"],
  cascadelake: [...SKYLAKEX, "AVX512_VNNI"],
  icelake: [...SKYLAKEX, "AVX512_VBMI", "AVX512_VNNI"],
  cooperlake: [...SKYLAKEX, "AVX512_VNNI", "AVX512_BF16"],
  zen4: ZEN4,
  alderlake: [...HASWELL, "AVX_VNNI"],
  sapphirerapids: [...ZEN4, "AMX_TILE", "AMX_INT8"],
};

/**
 * The llama.cpp CPU variant each of our forced kernel paths is compared with: the build for the
 * same instruction set, chosen so that it runs on every CPU our path runs on (ggml refuses a
 * variant when the CPU lacks any feature it is built with). "scalar" gets x64, the baseline
 * build (x86-64 with SSE2: the compiler may vectorise with SSE2, nothing newer). "avx2" gets
 * haswell: AVX2, FMA, F16C (+ BMI2, which every AVX2 CPU has), no AVX-512, no VNNI.
 * "avxvnni" (AVX2 + 256-bit AVX-VNNI) gets alderlake: haswell's set plus AVX_VNNI.
 * "avx512vnni" gets cascadelake: AVX-512 F/CD/VL/DQ/BW + VNNI, what our kernel needs (F, BW, VL,
 * VNNI) and nothing more; icelake would add VBMI (refused by Cascade Lake, where our path runs)
 * and zen4 / cooperlake add BF16 (refused by Ice Lake). "amx" gets sapphirerapids, the only
 * build with AMX (it also has VBMI and BF16, as every AMX CPU does).
 */
export const LLAMA_CPU_VARIANT_FOR_KERNEL_PATH: Readonly<Record<string, string>> = {
  scalar: "x64",
  avx2: "haswell",
  avxvnni: "alderlake",
  avx512vnni: "cascadelake",
  amx: "sapphirerapids",
};

/** The llama.cpp CPU variant that matches a forced kernel path of our CPU backend. */
export function llamaCpuVariantFor(kernelPath: string): string {
  const variant = LLAMA_CPU_VARIANT_FOR_KERNEL_PATH[kernelPath];
  if (variant === undefined) {
    throw new LlamaCpuVariantUnsupportedError(
      kernelPath,
      `no llama.cpp CPU variant corresponds to the kernel path "${kernelPath}" (known: ${Object.keys(LLAMA_CPU_VARIANT_FOR_KERNEL_PATH).join(", ")})`,
    );
  }
  return variant;
}

/** The /proc/cpuinfo flags (the kernel's view) each ggml feature's score check needs. */
const CPU_FLAGS: Readonly<Record<GgmlCpuFeature, readonly (readonly [string, string])[]>> = {
  SSE42: [["sse4_2", "SSE4.2"]],
  AVX: [["avx", "AVX"]],
  F16C: [["f16c", "F16C"]],
  FMA: [["fma", "FMA"]],
  AVX2: [["avx2", "AVX2"]],
  BMI2: [["bmi2", "BMI2"]],
  AVX_VNNI: [["avx_vnni", "AVX-VNNI"]],
  AVX512: [
    ["avx512f", "AVX-512F"],
    ["avx512cd", "AVX-512CD"],
    ["avx512vl", "AVX-512VL"],
    ["avx512dq", "AVX-512DQ"],
    ["avx512bw", "AVX-512BW"],
  ],
  AVX512_VBMI: [["avx512vbmi", "AVX-512 VBMI"]],
  AVX512_VNNI: [["avx512_vnni", "AVX-512 VNNI"]],
  AVX512_BF16: [["avx512_bf16", "AVX-512 BF16"]],
  AMX_TILE: [["amx_tile", "AMX-TILE"]],
  AMX_INT8: [["amx_int8", "AMX-INT8"]],
};

/** Lower-case CPU flags from /proc/cpuinfo; undefined where unreadable (not Linux). */
export function procCpuFlags(): ReadonlySet<string> | undefined {
  try {
    const line = /^flags\s*:(.*)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"))?.[1];
    return line === undefined
      ? undefined
      : new Set(line.trim().toLowerCase().split(/\s+/).filter(Boolean));
  } catch {
    return undefined;
  }
}

/**
 * Why this CPU cannot run the llama.cpp variant (the features it lacks), or undefined when it
 * can, or when the flags are unknown (then ggml's own check at load time decides).
 */
export function llamaCpuVariantLacks(
  variant: string,
  flags: ReadonlySet<string> | undefined = procCpuFlags(),
  arch: string = process.arch,
): string | undefined {
  const features = GGML_X86_CPU_VARIANTS[variant];
  if (features === undefined) {
    return `llama.cpp has no x86-64 CPU variant "${variant}" (known: ${Object.keys(GGML_X86_CPU_VARIANTS).join(", ")})`;
  }
  if (arch !== "x64") {
    return `llama.cpp's per-CPU variants are x86-64 builds and this is ${arch}`;
  }
  if (flags === undefined) {
    return undefined;
  }
  const missing = features
    .flatMap((f) => CPU_FLAGS[f])
    .filter(([flag]) => !flags.has(flag))
    .map(([, name]) => name);
  return missing.length === 0 ? undefined : `this CPU lacks ${missing.join(", ")}`;
}

/** Throws LlamaCpuVariantUnsupportedError when this CPU cannot run the variant. */
export function assertLlamaCpuVariantRunnable(variant: string): void {
  const reason = llamaCpuVariantLacks(variant);
  if (reason !== undefined) {
    throw new LlamaCpuVariantUnsupportedError(variant, reason);
  }
}

/**
 * The feature names llama.cpp's system info prints for a CPU backend built with `features`
 * (ggml_backend_cpu_get_features: the compiler's macros, so SSE4.2 shows as SSE3 and SSSE3 and
 * AMX-TILE has no entry of its own).
 */
function systemInfoNames(features: readonly GgmlCpuFeature[]): string[] {
  return features.flatMap((f) =>
    f === "SSE42" ? ["SSE3", "SSSE3"] : f === "AMX_TILE" ? [] : [f as string],
  );
}

/** Every instruction-set name that can tell the x86 variants apart in the system info. */
const ISA_NAMES = new Set(Object.values(GGML_X86_CPU_VARIANTS).flatMap(systemInfoNames));

/**
 * The instruction-set features in llama.cpp's system info ("CPU : SSE3 = 1 | AVX = 1 | … |"),
 * sorted; other entries (LLAMAFILE, REPACK, OPENMP, …) are left out.
 */
export function isaFeaturesOf(systemInfo: string): string[] {
  const out = new Set<string>();
  for (const m of systemInfo.matchAll(/([A-Z0-9_]+)\s*=\s*1\b/g)) {
    if (ISA_NAMES.has(m[1]!)) {
      out.add(m[1]!);
    }
  }
  return [...out].sort();
}

/** The variant whose build features are exactly the ISA features of a system-info string. */
export function variantFromSystemInfo(systemInfo: string): string | undefined {
  if (!/\bCPU\s*:/.test(systemInfo)) {
    return undefined;
  }
  const have = isaFeaturesOf(systemInfo).join(" ");
  for (const [variant, features] of Object.entries(GGML_X86_CPU_VARIANTS)) {
    if ([...new Set(systemInfoNames(features))].sort().join(" ") === have) {
      return variant;
    }
  }
  return undefined;
}

/** `ggml-cpu-<variant>` library file names (Linux, macOS, Windows). */
const VARIANT_LIBRARY = /^(?:lib)?ggml-cpu-([A-Za-z0-9_]+)\.(?:so|dll|dylib)$/;

/**
 * The `ggml-cpu-*` libraries mapped into this process, from /proc/self/maps (Linux), or from
 * the maps text given; null where there is none. ggml unloads the candidates it scored and did
 * not pick, so after loading this is the one that runs.
 */
export function mappedLlamaCpuVariants(
  maps: string | null = readSelfMaps(),
): { variant: string; path: string }[] | null {
  if (maps === null) {
    return null;
  }
  const seen = new Map<string, string>();
  for (const line of maps.split("\n")) {
    const file = line.split(/\s+/).slice(5).join(" ");
    const m = VARIANT_LIBRARY.exec(path.basename(file));
    if (m !== null && !seen.has(file)) {
      seen.set(file, m[1]!);
    }
  }
  return [...seen].map(([file, variant]) => ({ variant, path: file }));
}

function readSelfMaps(): string | null {
  try {
    return fs.readFileSync("/proc/self/maps", "utf8");
  } catch {
    return null;
  }
}

/** node-llama-cpp's name for this platform's prebuilt CPU folder and package ("linux-x64"). */
function platformFolder(): string {
  const platform =
    process.platform === "win32" ? "win" : process.platform === "darwin" ? "mac" : process.platform;
  return `${platform}-${process.arch}`;
}

export interface InstalledNodeLlamaCpp {
  /** The package's real folder. */
  readonly dir: string;
  readonly version: string;
  /** The entry file, relative to `dir` ("dist/index.js"). */
  readonly entry: string;
  readonly dependencies: readonly string[];
}

/** The installed node-llama-cpp: its folder (symlinks resolved), version, entry and dependencies. */
export function installedNodeLlamaCpp(): InstalledNodeLlamaCpp {
  let entry: string;
  try {
    entry = fs.realpathSync(createRequire(import.meta.url).resolve("node-llama-cpp"));
  } catch (error) {
    throw new ReferenceUnavailableError("the node-llama-cpp package is not installed", {
      cause: error,
    });
  }
  for (let dir = path.dirname(entry); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const file = path.join(dir, "package.json");
    if (fs.existsSync(file)) {
      const pkg = JSON.parse(fs.readFileSync(file, "utf8")) as {
        name?: string;
        version?: string;
        dependencies?: Record<string, string>;
        peerDependencies?: Record<string, string>;
      };
      if (pkg.name === "node-llama-cpp") {
        return {
          dir,
          version: pkg.version ?? "unknown",
          entry: path.relative(dir, entry),
          dependencies: [
            ...Object.keys(pkg.dependencies ?? {}),
            ...Object.keys(pkg.peerDependencies ?? {}),
          ],
        };
      }
    }
  }
  throw new ReferenceUnavailableError(`no node-llama-cpp package.json above ${entry}`);
}

/** A folder node-llama-cpp accepts as a prebuilt binary: the addon and its build metadata. */
function isPrebuiltFolder(dir: string): boolean {
  return (
    fs.existsSync(path.join(dir, "llama-addon.node")) &&
    fs.existsSync(path.join(dir, "_nlcBuildMetadata.json"))
  );
}

/**
 * The prebuilt CPU binaries node-llama-cpp would use, in its own order: its package's
 * `bins/<platform>-<arch>/`, then the `@node-llama-cpp/<platform>-<arch>` package of the same
 * version.
 */
export function prebuiltCpuBinsDir(nlc: InstalledNodeLlamaCpp = installedNodeLlamaCpp()): string {
  const folder = platformFolder();
  const own = path.join(nlc.dir, "bins", folder);
  if (isPrebuiltFolder(own)) {
    return own;
  }
  const lookup = createRequire(path.join(nlc.dir, "package.json")).resolve.paths("x") ?? [];
  for (const nodeModules of lookup) {
    const pkgDir = path.join(nodeModules, "@node-llama-cpp", folder);
    const bins = path.join(pkgDir, "bins", folder);
    if (!isPrebuiltFolder(bins)) {
      continue;
    }
    const version = (
      JSON.parse(fs.readFileSync(path.join(pkgDir, "package.json"), "utf8")) as {
        version?: string;
      }
    ).version;
    if (version === nlc.version) {
      return fs.realpathSync(bins);
    }
  }
  throw new ReferenceUnavailableError(
    `node-llama-cpp ${nlc.version} has no prebuilt CPU binaries for ${folder} here (the optional package @node-llama-cpp/${folder} is not installed)`,
  );
}

/** The `ggml-cpu-*` variants a prebuilt binaries folder ships. */
export function shippedLlamaCpuVariants(binsDir: string): string[] {
  return fs
    .readdirSync(binsDir)
    .map((name) => VARIANT_LIBRARY.exec(name)?.[1])
    .filter((v): v is string => v !== undefined)
    .sort();
}

/** Hard-links `from` to `to`, or copies it where links are impossible (another file system). */
function linkOrCopy(from: string, to: string): void {
  try {
    fs.linkSync(from, to);
  } catch {
    fs.copyFileSync(from, to);
  }
}

/** Copies a tree file by file (hard links where possible); `skip` gets paths relative to `from`. */
function copyTree(from: string, to: string, skip: (relative: string) => boolean, rel = ""): void {
  fs.mkdirSync(to, { recursive: true });
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    const relative = rel === "" ? entry.name : `${rel}/${entry.name}`;
    if (skip(relative)) {
      continue;
    }
    const source = path.join(from, entry.name);
    const target = path.join(to, entry.name);
    if (entry.isDirectory()) {
      copyTree(source, target, skip, relative);
    } else if (entry.isFile()) {
      linkOrCopy(source, target);
    } else if (entry.isSymbolicLink()) {
      const real = fs.realpathSync(source);
      if (fs.statSync(real).isDirectory()) {
        copyTree(real, target, skip, relative);
      } else {
        linkOrCopy(real, target);
      }
    }
  }
}

/**
 * Parts of node-llama-cpp a prebuilt CPU binary does not need at run time, or must not see: a
 * local build (which getLlama prefers to the prebuilt one), the llama.cpp sources and build
 * tools, the templates of its `init` command, and the pointers to its moved binaries.
 */
const SKIPPED = new Set([
  "bins",
  "node_modules",
  "templates",
  ".temp",
  "llama/localBuilds",
  "llama/llama.cpp",
  "llama/gitRelease.bundle",
  "llama/xpack",
  "llama/lastBuild.json",
]);

export interface LlamaVariantCopy {
  /** The private package folder, `<root>/node_modules/node-llama-cpp`. */
  readonly packageDir: string;
  /** Its entry, to import. */
  readonly entry: string;
  /** The prebuilt folder inside it, holding only `ggml-cpu-<variant>` of the variants. */
  readonly binsDir: string;
  /** The folder the binaries were taken from. */
  readonly sourceBinsDir: string;
}

/** Default home of the private copies: the OS temporary folder. */
export function defaultLlamaVariantCacheDir(): string {
  return path.join(os.tmpdir(), "bitnet-ts-llama-cpu-variants");
}

/**
 * A private copy of node-llama-cpp whose prebuilt CPU binaries hold only the given `ggml-cpu-*`
 * variant, under `cacheDir` (made once per node-llama-cpp installation and variant; concurrent
 * callers each build their own and the first rename wins).
 */
export function prepareLlamaVariantCopy(
  variant: string,
  cacheDir: string = defaultLlamaVariantCacheDir(),
): LlamaVariantCopy {
  const nlc = installedNodeLlamaCpp();
  const sourceBinsDir = prebuiltCpuBinsDir(nlc);
  const shipped = shippedLlamaCpuVariants(sourceBinsDir);
  if (!shipped.includes(variant)) {
    throw new LlamaCpuVariantUnsupportedError(
      variant,
      shipped.length === 0
        ? `node-llama-cpp ${nlc.version}'s prebuilt binaries in ${sourceBinsDir} have no per-CPU variants`
        : `node-llama-cpp ${nlc.version} ships no ggml-cpu-${variant} library (it has ${shipped.join(", ")})`,
    );
  }
  const binFiles = fs
    .readdirSync(sourceBinsDir)
    .filter((name) => {
      const v = VARIANT_LIBRARY.exec(name)?.[1];
      return v === undefined || v === variant;
    })
    .sort();
  // Keyed by the installation (its folder, version and binaries' sizes and times) so that a
  // reinstall or an update gets a fresh copy.
  const key = createHash("sha256")
    .update(
      JSON.stringify([
        nlc.dir,
        nlc.version,
        sourceBinsDir,
        binFiles.map((name) => {
          const s = fs.statSync(path.join(sourceBinsDir, name));
          return [name, s.size, s.mtimeMs];
        }),
      ]),
    )
    .digest("hex")
    .slice(0, 12);
  const folder = platformFolder();
  const root = path.join(cacheDir, `node-llama-cpp-${nlc.version}-${folder}-${variant}-${key}`);
  const packageDir = path.join(root, "node_modules", "node-llama-cpp");
  const copy: LlamaVariantCopy = {
    packageDir,
    entry: path.join(packageDir, nlc.entry),
    binsDir: path.join(packageDir, "bins", folder),
    sourceBinsDir,
  };
  if (fs.existsSync(root)) {
    if (fs.existsSync(copy.entry) && isPrebuiltFolder(copy.binsDir)) {
      return copy;
    }
    fs.rmSync(root, { recursive: true, force: true }); // damaged (files deleted): made again
  }
  fs.mkdirSync(cacheDir, { recursive: true });
  const staging = fs.mkdtempSync(`${root}.tmp-`);
  try {
    const stagedPackage = path.join(staging, "node_modules", "node-llama-cpp");
    copyTree(nlc.dir, stagedPackage, (relative) => SKIPPED.has(relative));
    const stagedBins = path.join(stagedPackage, "bins", folder);
    fs.mkdirSync(stagedBins, { recursive: true });
    for (const name of binFiles) {
      const source = path.join(sourceBinsDir, name);
      if (fs.statSync(source).isDirectory()) {
        copyTree(source, path.join(stagedBins, name), () => false);
      } else {
        linkOrCopy(source, path.join(stagedBins, name));
      }
    }
    // The dependencies, as installed for the original package (links, so their own
    // dependencies resolve where they are). The @node-llama-cpp/* binary packages stay out.
    const lookup = createRequire(path.join(nlc.dir, "package.json")).resolve.paths("x") ?? [];
    for (const name of nlc.dependencies) {
      const found = lookup
        .map((dir) => path.join(dir, name))
        .find((dir) => fs.existsSync(path.join(dir, "package.json")));
      if (found === undefined) {
        continue; // an optional peer (typescript) or a missing dependency: the import says so
      }
      const link = path.join(staging, "node_modules", name);
      fs.mkdirSync(path.dirname(link), { recursive: true });
      fs.symlinkSync(fs.realpathSync(found), link, "junction");
    }
    try {
      fs.renameSync(staging, root);
    } catch (error) {
      if (!fs.existsSync(root)) {
        throw error;
      }
      fs.rmSync(staging, { recursive: true, force: true }); // another process finished first
    }
  } catch (error) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw error;
  }
  return copy;
}
