/**
 * What the machine has, for choosing backends, receipts and `bitnet info`. Never throws: what
 * cannot be read is reported as unknown or unavailable with a reason.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import { type CpuInfo, probeCpu } from "./cpu";
import { type CudaInfo, type MetalInfo, probeCuda, probeMetal } from "./gpu";

export {
  type CacheInfo,
  type CpuFeatures,
  type CpuInfo,
  featuresFromFlags,
  parseProcCpuinfo,
  probeCpu,
} from "./cpu";
export {
  type CudaDevice,
  type CudaInfo,
  type MetalInfo,
  parseNvccVersion,
  parseNvidiaSmi,
  probeCuda,
  probeMetal,
} from "./gpu";

export interface MemoryInfo {
  readonly totalBytes: number;
  /** Memory available for new work (MemAvailable on Linux, free memory elsewhere). */
  readonly availableBytes: number;
}

export interface DeviceReport {
  readonly platform: string;
  readonly osRelease: string;
  readonly node: string;
  readonly cpu: CpuInfo;
  readonly memory: MemoryInfo;
  readonly cuda: CudaInfo;
  readonly metal: MetalInfo;
}

export function probeMemory(): MemoryInfo {
  let available = os.freemem();
  try {
    const m = /^MemAvailable:\s+(\d+) kB/m.exec(fs.readFileSync("/proc/meminfo", "utf8"));
    if (m !== null) {
      available = Number(m[1]) * 1024;
    }
  } catch {
    // not Linux
  }
  return { totalBytes: os.totalmem(), availableBytes: available };
}

let cached: DeviceReport | undefined;

/**
 * Probes the machine (cached after the first call).
 *
 * @example
 * const device = probeDevice();
 * device.cpu.features.avx512vnni; // true on Ice Lake and later
 * device.cuda.gpuPresent || device.cuda.reason; // "no NVIDIA driver (…)"
 */
export function probeDevice(options: { refresh?: boolean } = {}): DeviceReport {
  if (cached === undefined || options.refresh) {
    cached = {
      platform: process.platform,
      osRelease: os.release(),
      node: process.version,
      cpu: probeCpu(),
      memory: probeMemory(),
      cuda: probeCuda(),
      metal: probeMetal(),
    };
  }
  return cached;
}

/**
 * The widest SIMD extension this CPU offers ("avx512vnni" … "scalar"). A fact about the CPU, not
 * the kernel path a backend runs: ask the backend for that (the CPU backend has no NEON kernels
 * yet, for one).
 */
export function cpuSimdLevel(
  cpu: CpuInfo,
): "avx512vnni" | "avx2" | "neon-dotprod" | "neon" | "scalar" {
  const f = cpu.features;
  if (f.avx512f && f.avx512bw && f.avx512vnni) {
    return "avx512vnni";
  }
  if (f.avx2 && f.fma) {
    return "avx2";
  }
  if (f.neon && f.dotprod) {
    return "neon-dotprod";
  }
  return f.neon ? "neon" : "scalar";
}

/** A one-screen summary for logs and receipts. */
export function summarizeDevice(r: DeviceReport): Record<string, unknown> {
  const f = Object.entries(r.cpu.features)
    .filter(([, v]) => v)
    .map(([k]) => k);
  return {
    platform: `${r.platform} ${r.osRelease}`,
    node: r.node,
    cpu: r.cpu.model,
    arch: r.cpu.arch,
    features: f,
    cpu_simd: cpuSimdLevel(r.cpu),
    physical_cores: r.cpu.physicalCores,
    logical_cores: r.cpu.logicalCores,
    memory_total_bytes: r.memory.totalBytes,
    nvidia_gpus: r.cuda.gpuPresent
      ? r.cuda.devices.map((d) => `${d.name} (sm ${d.computeCapability})`)
      : `none: ${r.cuda.reason}`,
    metal_gpu: r.metal.gpuPresent ? (r.metal.device ?? "present") : `none: ${r.metal.reason}`,
  };
}
