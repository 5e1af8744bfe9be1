/**
 * Every kernel path the addon can name, and why this machine skips the ones it cannot run. The
 * suites register a test per path in ALL_KERNEL_PATHS, skipped with the reason in its title where
 * the path is unavailable, so the totals show what did not run instead of the tests not
 * existing (an AVX2-only machine, or an ARM one, would otherwise silently run fewer tests).
 */
import * as fs from "node:fs";
import { KERNEL_PATHS } from "../src/kernel-paths";
import { loadBinding } from "../src/loader";

/** The names the addon's select_kernels / available_kernel_paths know (src/kernel-paths.ts). */
export const ALL_KERNEL_PATHS: typeof KERNEL_PATHS = KERNEL_PATHS;

/** Kernel paths the addon offers on this CPU (best last). */
export function availablePaths(): string[] {
  return loadBinding().availablePaths();
}

/**
 * The AArch64 feature names of the hardware capability words the kernel hands this process
 * (/proc/self/auxv: AT_HWCAP bit 1 asimd, bit 20 asimddp; AT_HWCAP2 bit 13 i8mm), the same words
 * the addon's getauxval reads. Under qemu-user they describe the emulated CPU, while
 * /proc/cpuinfo is the host's.
 */
function arm64Hwcaps(): ReadonlySet<string> | undefined {
  let auxv: Buffer;
  try {
    auxv = fs.readFileSync("/proc/self/auxv");
  } catch {
    return undefined;
  }
  let hwcap = 0n;
  let hwcap2 = 0n;
  for (let i = 0; i + 16 <= auxv.length; i += 16) {
    const type = auxv.readBigUInt64LE(i);
    if (type === 16n) {
      hwcap = auxv.readBigUInt64LE(i + 8);
    }
    if (type === 26n) {
      hwcap2 = auxv.readBigUInt64LE(i + 8);
    }
  }
  const flags = new Set<string>();
  if (hwcap & (1n << 1n)) {
    flags.add("asimd");
  }
  if (hwcap & (1n << 20n)) {
    flags.add("asimddp");
  }
  if (hwcap2 & (1n << 13n)) {
    flags.add("i8mm");
  }
  return flags;
}

/**
 * Lower-case CPU flags as the OS reports them (x86: /proc/cpuinfo "flags"; AArch64 Linux: the
 * auxv capability words); undefined where unreadable (not Linux).
 */
export function cpuFlags(): ReadonlySet<string> | undefined {
  if (process.arch === "arm64" && process.platform === "linux") {
    return arm64Hwcaps();
  }
  try {
    const text = fs.readFileSync("/proc/cpuinfo", "utf8");
    const line = /^(?:flags|Features)\s*:(.*)$/m.exec(text)?.[1];
    return line === undefined
      ? undefined
      : new Set(line.trim().toLowerCase().split(/\s+/).filter(Boolean));
  } catch {
    return undefined;
  }
}

/**
 * Why the CPU (not the addon) cannot run `path`, or undefined when its features are there. The
 * flags are the kernel's own view, which already hides features the OS does not enable.
 */
export function cpuLacks(
  path: string,
  flags: ReadonlySet<string> | undefined = cpuFlags(),
): string | undefined {
  const x86 = process.arch === "x64" || process.arch === "ia32";
  const lacking = (features: readonly [flag: string, name: string][]): string | undefined => {
    if (flags === undefined) {
      return undefined; // unknown: not the CPU's fault as far as we can tell
    }
    const missing = features.filter(([flag]) => !flags.has(flag)).map(([, name]) => name);
    return missing.length === 0 ? undefined : `this CPU lacks ${missing.join(", ")}`;
  };
  switch (path) {
    case "scalar":
      return undefined;
    case "avx2":
      return x86
        ? lacking([
            ["avx2", "AVX2"],
            ["fma", "FMA"],
            ["f16c", "F16C"],
          ])
        : "this CPU is not x86";
    case "avxvnni":
      return x86
        ? lacking([
            ["avx2", "AVX2"],
            ["fma", "FMA"],
            ["f16c", "F16C"],
            ["avx_vnni", "AVX-VNNI"],
          ])
        : "this CPU is not x86";
    case "avx512vnni":
      return x86
        ? lacking([
            ["avx512f", "AVX-512F"],
            ["avx512bw", "AVX-512BW"],
            ["avx512vl", "AVX-512VL"],
            ["avx512_vnni", "AVX-512 VNNI"],
          ])
        : "this CPU is not x86";
    case "amx":
      return x86
        ? lacking([
            ["avx512_vnni", "AVX-512 VNNI"],
            ["amx_tile", "AMX-TILE"],
            ["amx_int8", "AMX-INT8"],
          ])
        : "this CPU is not x86";
    case "neon":
      return process.arch === "arm64" ? undefined : "this CPU is not AArch64";
    case "neon-dotprod":
      return process.arch === "arm64"
        ? lacking([["asimddp", "the dot-product extension"]])
        : "this CPU is not AArch64";
    case "neon-i8mm":
      return process.arch === "arm64"
        ? lacking([
            ["asimddp", "the dot-product extension"],
            ["i8mm", "the int8 matrix-multiply extension"],
          ])
        : "this CPU is not AArch64";
    default:
      return `the addon does not know the path "${path}"`;
  }
}

/**
 * Why this machine cannot run `path` (undefined: the addon offers it here). Reasons name the
 * missing CPU features; where the CPU has them, they say what else is missing.
 */
export function pathSkipReason(path: string): string | undefined {
  // A run may narrow the paths it tests (the arm64 run under emulation, where each path costs
  // minutes, leaves out scalar: the same C++ runs natively on every x86 CI run).
  const only = process.env["BITNET_TEST_KERNEL_PATHS"];
  if (only !== undefined && only !== "" && !only.split(",").includes(path)) {
    return `not among BITNET_TEST_KERNEL_PATHS=${only}`;
  }
  if (availablePaths().includes(path)) {
    return undefined;
  }
  const cpu = cpuLacks(path);
  if (cpu !== undefined) {
    return cpu;
  }
  if (cpuFlags() === undefined) {
    return `the addon does not offer it here (CPU flags are not readable on ${process.platform})`;
  }
  return path === "amx"
    ? "the OS does not grant this process the AMX tile state"
    : "the addon does not offer it although this CPU has the features";
}

/** `path`, followed by " (skipped: reason)" when this machine cannot run it. */
export function pathTitle(path: string): string {
  const reason = pathSkipReason(path);
  return reason === undefined ? path : `${path} (skipped: ${reason})`;
}
