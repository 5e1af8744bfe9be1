/**
 * GPU hardware as the system reports it: NVIDIA GPUs (nvidia-smi, nvcc) and Metal. These are facts
 * about the machine, not about backends: whether the CUDA or WebGPU backend can run is for the
 * backend package to say when it loads (engine-core's probeBackends).
 */
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
