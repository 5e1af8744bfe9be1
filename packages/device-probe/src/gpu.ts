/**
 * GPU hardware as the system reports it: NVIDIA GPUs (nvidia-smi, nvcc) and Metal. These are facts
 * about the machine, not about backends: whether the CUDA or WebGPU backend can run is for the
 * backend package to say when it loads (engine-core's probeBackends).
 */
import { execFileSync } from "node:child_process";

export interface CudaDevice {
  readonly index: number;
  readonly name: string;
  readonly computeCapability: string;
  readonly memoryBytes: number;
}

export interface CudaInfo {
  /** The NVIDIA driver reports at least one GPU. It does not mean a CUDA backend can run. */
  readonly gpuPresent: boolean;
  /** Why no NVIDIA GPU is usable (absent when one is present). */
  readonly reason?: string;
  readonly driverVersion?: string;
  /** The CUDA toolkit (nvcc) version, when installed. */
  readonly runtimeVersion?: string;
  readonly devices: readonly CudaDevice[];
}

export interface MetalInfo {
  /** macOS reports a Metal-capable GPU. */
  readonly gpuPresent: boolean;
  readonly reason?: string;
  readonly device?: string;
}

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

/** Parses `nvidia-smi --query-gpu=index,name,compute_cap,memory.total,driver_version --format=csv,noheader,nounits`. */
export function parseNvidiaSmi(csv: string): {
  devices: CudaDevice[];
  driverVersion: string | undefined;
} {
  const devices: CudaDevice[] = [];
  let driverVersion: string | undefined;
  for (const line of csv.split("\n")) {
    const parts = line.split(",").map((s) => s.trim());
    if (parts.length < 5 || parts[0] === "") {
      continue;
    }
    devices.push({
      index: Number(parts[0]),
      name: parts[1]!,
      computeCapability: parts[2]!,
      memoryBytes: Number(parts[3]) * 1024 * 1024,
    });
    driverVersion = parts[4];
  }
  return { devices, driverVersion };
}

/** Parses `nvcc --version` ("… release 13.0, V13.0.88"). */
export function parseNvccVersion(text: string): string | undefined {
  return /release ([\d.]+)/.exec(text)?.[1];
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
