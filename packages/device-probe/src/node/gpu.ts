/** Node only: NVIDIA GPUs through nvidia-smi and nvcc, Metal through system_profiler. */
import { execFileSync } from "node:child_process";
import { type CudaInfo, type MetalInfo, parseNvccVersion, parseNvidiaSmi } from "../gpu";

function run(command: string, args: string[]): string | undefined {
  try {
    return execFileSync(command, args, {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 5000,
    });
  } catch {
    return undefined;
  }
}

export function probeCuda(): CudaInfo {
  const nvcc = run("nvcc", ["--version"]);
  const runtimeVersion = nvcc === undefined ? undefined : parseNvccVersion(nvcc);
  const withRuntime = runtimeVersion === undefined ? {} : { runtimeVersion };
  if (process.platform === "darwin") {
    return { gpuPresent: false, reason: "CUDA does not run on macOS", devices: [], ...withRuntime };
  }
  const smi = run("nvidia-smi", [
    "--query-gpu=index,name,compute_cap,memory.total,driver_version",
    "--format=csv,noheader,nounits",
  ]);
  if (smi === undefined) {
    return {
      gpuPresent: false,
      reason: "no NVIDIA driver (nvidia-smi not found or failed)",
      devices: [],
      ...withRuntime,
    };
  }
  const { devices, driverVersion } = parseNvidiaSmi(smi);
  if (devices.length === 0) {
    return {
      gpuPresent: false,
      reason: "the NVIDIA driver reports no GPU",
      devices,
      ...withRuntime,
    };
  }
  return {
    gpuPresent: true,
    devices,
    ...(driverVersion === undefined ? {} : { driverVersion }),
    ...withRuntime,
  };
}

export function probeMetal(): MetalInfo {
  if (process.platform !== "darwin") {
    return {
      gpuPresent: false,
      reason: `Metal exists only on macOS (this is ${process.platform})`,
    };
  }
  const gpu = run("system_profiler", ["SPDisplaysDataType"]);
  const name = gpu === undefined ? undefined : /Chipset Model:\s*(.+)/.exec(gpu)?.[1]?.trim();
  if (gpu !== undefined && !/Metal/i.test(gpu)) {
    return { gpuPresent: false, reason: "no Metal-capable GPU reported" };
  }
  return name === undefined ? { gpuPresent: true } : { gpuPresent: true, device: name };
}
