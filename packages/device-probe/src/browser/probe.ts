/**
 * Probes for the browser build: a page cannot read /proc or run nvidia-smi, so this reports what
 * `navigator` offers (logical cores, approximate memory) and everything else as unknown, with the
 * reason. Whether WebGPU works is for the WebGPU backend to say when it requests an adapter.
 */
import { type CpuInfo, NO_FEATURES } from "../cpu";
import type { CudaInfo, MetalInfo } from "../gpu";
import type { DeviceReport, MemoryInfo } from "../report";

interface BrowserNavigator {
  readonly hardwareConcurrency?: number;
  /** GiB, rounded and capped by the browser (Chromium only). */
  readonly deviceMemory?: number;
}

/** Chromium's non-standard `performance.memory`. */
interface HeapMemory {
  readonly jsHeapSizeLimit?: number;
  readonly usedJSHeapSize?: number;
}

function navigatorInfo(): BrowserNavigator {
  return (globalThis as { navigator?: BrowserNavigator }).navigator ?? {};
}

export function probeCpu(): CpuInfo {
  const cores = navigatorInfo().hardwareConcurrency;
  const logicalCores = typeof cores === "number" && cores > 0 ? cores : 1;
  return {
    arch: "unknown",
    vendor: "unknown",
    model: "unknown",
    features: NO_FEATURES,
    physicalCores: logicalCores,
    logicalCores,
    caches: [],
  };
}

export function probeMemory(): MemoryInfo {
  const gib = navigatorInfo().deviceMemory;
  const totalBytes = typeof gib === "number" && gib > 0 ? Math.round(gib * 2 ** 30) : 0;
  const heap = (globalThis as { performance?: { memory?: HeapMemory } }).performance?.memory;
  if (typeof heap?.jsHeapSizeLimit === "number" && typeof heap.usedJSHeapSize === "number") {
    return { totalBytes, availableBytes: Math.max(0, heap.jsHeapSizeLimit - heap.usedJSHeapSize) };
  }
  return { totalBytes, availableBytes: Math.floor(totalBytes / 2) };
}

export function probeCuda(): CudaInfo {
  return { gpuPresent: false, reason: "CUDA is not reachable from a browser", devices: [] };
}

export function probeMetal(): MetalInfo {
  return { gpuPresent: false, reason: "Metal is not reachable from a browser (WebGPU may be)" };
}

let cached: DeviceReport | undefined;

/** Probes what the page can see (cached after the first call). */
export function probeDevice(options: { refresh?: boolean } = {}): DeviceReport {
  if (cached === undefined || options.refresh) {
    cached = {
      platform: "browser",
      osRelease: "",
      node: "",
      cpu: probeCpu(),
      memory: probeMemory(),
      cuda: probeCuda(),
      metal: probeMetal(),
    };
  }
  return cached;
}
