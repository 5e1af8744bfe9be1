/** Node only: memory and the whole device report, read from the OS. */
import * as fs from "node:fs";
import * as os from "node:os";
import type { DeviceReport, MemoryInfo } from "../report";
import { probeCpu } from "./cpu";
import { probeCuda, probeMetal } from "./gpu";

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
