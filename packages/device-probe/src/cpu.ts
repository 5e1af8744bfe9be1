/**
 * CPU identity and SIMD features: the types, and the parsers of what the OS reports
 * (/proc/cpuinfo on Linux); node/cpu.ts reads it. Native kernels do their own cpuid for
 * dispatch; this is the portable view for choosing backends, receipts and `bitnet info`.
 */
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

/** No SIMD feature known (what a probe that cannot see the CPU reports). */
export const NO_FEATURES: CpuFeatures = {
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
