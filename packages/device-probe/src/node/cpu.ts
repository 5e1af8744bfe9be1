/** Node only: the CPU as the OS reports it (/proc/cpuinfo and /sys on Linux, sysctl on macOS). */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import {
  type CacheInfo,
  type CpuInfo,
  featuresFromFlags,
  NO_FEATURES,
  parseProcCpuinfo,
} from "../cpu";

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
