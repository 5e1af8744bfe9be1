/** The device report's shape and what is derived from it (no probing: see node/probe.ts). */
import type { CpuInfo } from "./cpu";
import type { CudaInfo, MetalInfo } from "./gpu";

export interface MemoryInfo {
  /** Physical memory (in a browser: `navigator.deviceMemory` where offered, else 0 = unknown). */
  readonly totalBytes: number;
  /**
   * Memory available for new work (MemAvailable on Linux, free memory elsewhere; in a browser
   * the JS heap's headroom where readable, else half of `totalBytes`, else 0 = unknown).
   */
  readonly availableBytes: number;
}

export interface DeviceReport {
  /** `process.platform` ("linux", "darwin", "win32"), or "browser". */
  readonly platform: string;
  /** The OS release ("" in a browser: pages cannot see it). */
  readonly osRelease: string;
  /** The Node version ("" in a browser). */
  readonly node: string;
  readonly cpu: CpuInfo;
  readonly memory: MemoryInfo;
  readonly cuda: CudaInfo;
  readonly metal: MetalInfo;
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
