/**
 * CPU identity and SIMD features, read from what the OS reports (/proc/cpuinfo and /sys on
 * Linux, sysctl on macOS). Native kernels do their own cpuid for dispatch; this is the portable
 * view for choosing backends, receipts and `bitnet info`.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";

export interface CpuFeatures {
  readonly sse42: boolean;
  readonly avx2: boolean;
  readonly fma: boolean;
  readonly f16c: boolean;
  readonly avx512f: boolean;
  readonly avx512bw: boolean;
  readonly avx512vl: boolean;
  readonly avx512vnni: boolean;
  readonly avx512bf16: boolean;
  /** AVX-VNNI (VEX-encoded VNNI on AVX2 machines). */
  readonly avxvnni: boolean;
  readonly neon: boolean;
  readonly dotprod: boolean;
  readonly i8mm: boolean;
}

export interface CacheInfo {
  readonly level: number;
  readonly type: string;
  readonly sizeBytes: number;
}

export interface CpuInfo {
  readonly arch: string;
  readonly vendor: string;
  readonly model: string;
  readonly features: CpuFeatures;
  readonly physicalCores: number;
  readonly logicalCores: number;
  readonly caches: readonly CacheInfo[];
}

const NO_FEATURES: CpuFeatures = {
  sse42: false,
  avx2: false,
  fma: false,
  f16c: false,
  avx512f: false,
  avx512bw: false,
  avx512vl: false,
  avx512vnni: false,
  avx512bf16: false,
  avxvnni: false,
  neon: false,
  dotprod: false,
  i8mm: false,
};

/** Features from the flag words of /proc/cpuinfo (x86 "flags", ARM "Features"). */
export function featuresFromFlags(flags: Iterable<string>, arch: string): CpuFeatures {
  const f = new Set([...flags].map((x) => x.toLowerCase()));
  const arm = arch === "arm64" || arch === "arm";
  return {
    sse42: f.has("sse4_2"),
    avx2: f.has("avx2"),
    fma: f.has("fma"),
    f16c: f.has("f16c"),
    avx512f: f.has("avx512f"),
    avx512bw: f.has("avx512bw"),
    avx512vl: f.has("avx512vl"),
    avx512vnni: f.has("avx512_vnni") || f.has("avx512vnni"),
    avx512bf16: f.has("avx512_bf16") || f.has("avx512bf16"),
    avxvnni: f.has("avx_vnni") || f.has("avxvnni"),
    // 64-bit ARM always has Advanced SIMD; /proc/cpuinfo calls it "asimd".
    neon: arch === "arm64" || f.has("asimd") || f.has("neon"),
    dotprod: arm && (f.has("asimddp") || f.has("dotprod")),
    i8mm: arm && f.has("i8mm"),
  };
}

/** Parses /proc/cpuinfo text: model, vendor, feature flags and physical cores. */
export function parseProcCpuinfo(
  text: string,
  arch: string,
): { vendor: string; model: string; features: CpuFeatures; physicalCores: number | undefined } {
  const field = (name: string): string | undefined => {
    const m = new RegExp(`^${name}\\s*:\\s*(.*)$`, "m").exec(text);
    return m?.[1]?.trim();
  };
  const flags = (field("flags") ?? field("Features") ?? "").split(/\s+/).filter(Boolean);
  const cores = new Set<string>();
  let physical = "";
  for (const line of text.split("\n")) {
    const [key, value] = line.split(":").map((s) => s.trim());
    if (key === "physical id") {
      physical = value ?? "";
    } else if (key === "core id") {
      cores.add(`${physical}:${value}`);
    }
  }
  return {
    vendor: field("vendor_id") ?? field("CPU implementer") ?? "unknown",
    model: field("model name") ?? field("Hardware") ?? field("Model") ?? "unknown",
    features: featuresFromFlags(flags, arch),
    physicalCores: cores.size > 0 ? cores.size : undefined,
  };
}

function readCaches(): CacheInfo[] {
  const base = "/sys/devices/system/cpu/cpu0/cache";
  const out: CacheInfo[] = [];
  try {
    for (const entry of fs.readdirSync(base)) {
      if (!entry.startsWith("index")) {
        continue;
      }
      const read = (f: string) => fs.readFileSync(`${base}/${entry}/${f}`, "utf8").trim();
      const size = read("size");
      const m = /^(\d+)([KMG]?)$/.exec(size);
      if (m === null) {
        continue;
      }
      const mult = m[2] === "K" ? 1024 : m[2] === "M" ? 1024 ** 2 : m[2] === "G" ? 1024 ** 3 : 1;
      out.push({
        level: Number(read("level")),
        type: read("type"),
        sizeBytes: Number(m[1]) * mult,
      });
    }
  } catch {
    // not Linux, or no sysfs: caches unknown
  }
  return out.sort((a, b) => a.level - b.level || a.type.localeCompare(b.type));
}

function sysctl(name: string): string | undefined {
  try {
    return execFileSync("sysctl", ["-n", name], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 2000,
    }).trim();
  } catch {
    return undefined;
  }
}

export function probeCpu(): CpuInfo {
  const arch = process.arch;
  const logicalCores =
    typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length;
  if (process.platform === "linux") {
    try {
      const parsed = parseProcCpuinfo(fs.readFileSync("/proc/cpuinfo", "utf8"), arch);
      return {
        arch,
        ...parsed,
        physicalCores: parsed.physicalCores ?? logicalCores,
        logicalCores,
        caches: readCaches(),
      };
    } catch {
      // fall through to the portable answer
    }
  }
  if (process.platform === "darwin") {
    const flags =
      `${sysctl("machdep.cpu.features") ?? ""} ${sysctl("machdep.cpu.leaf7_features") ?? ""}`
        .toLowerCase()
        .split(/\s+/);
    const x86 = new Set(flags.map((f) => f.replace(/\./g, "_")));
    const features =
      arch === "arm64"
        ? {
            ...NO_FEATURES,
            neon: true,
            dotprod: sysctl("hw.optional.arm.FEAT_DotProd") === "1",
            i8mm: sysctl("hw.optional.arm.FEAT_I8MM") === "1",
          }
        : featuresFromFlags(
            [...x86]
              .map((f) => (f === "sse4_2" ? "sse4_2" : f === "avx2_0" ? "avx2" : f))
              .concat(x86.has("avx2") ? ["avx2"] : []),
            arch,
          );
    return {
      arch,
      vendor: sysctl("machdep.cpu.vendor") ?? (arch === "arm64" ? "Apple" : "unknown"),
      model: sysctl("machdep.cpu.brand_string") ?? os.cpus()[0]?.model ?? "unknown",
      features,
      physicalCores: Number(sysctl("hw.physicalcpu") ?? logicalCores),
      logicalCores,
      caches: [],
    };
  }
  return {
    arch,
    vendor: "unknown",
    model: os.cpus()[0]?.model ?? "unknown",
    features: { ...NO_FEATURES, neon: arch === "arm64" },
    physicalCores: logicalCores,
    logicalCores,
    caches: [],
  };
}
