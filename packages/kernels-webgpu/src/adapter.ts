/**
 * Getting a WebGPU device: the browser's `navigator.gpu` where there is one, else Dawn through
 * the `webgpu` npm package (Metal on macOS, Vulkan on Linux, Direct3D 12 on Windows).
 */
import { EngineError, EngineErrorCode } from "@bitnet-ts/engine-core";

/** Which of Dawn's native APIs to use (default: the platform's own). */
export type DawnBackendType = "metal" | "vulkan" | "d3d12";

export type RequestGpuOptions = {
  /** Force one of Dawn's native APIs ("metal" on macOS is what `--backend metal` asks for). */
  readonly backendType?: DawnBackendType;
  /** Pick the adapter whose description contains this text (case-insensitive). */
  readonly adapterName?: string;
  readonly powerPreference?: GPUPowerPreference;
};

/** An adapter as `bitnet info` shows it. */
export interface AdapterReport {
  readonly vendor: string;
  readonly architecture: string;
  readonly device: string;
  readonly description: string;
  /** The native API under WebGPU ("vulkan", "metal", "d3d12", or "browser"). */
  readonly backendType: string;
  readonly features: readonly string[];
  readonly limits: Readonly<Record<string, number>>;
}

export interface GpuHandle {
  readonly adapter: GPUAdapter;
  readonly device: GPUDevice;
  readonly report: AdapterReport;
  /** Destroys the device; the handle is unusable afterwards. */
  release(): void;
}

/**
 * Dawn's GPU objects, kept alive for the life of the process: V8 would otherwise collect the
 * object `create()` returns while devices made from it are still in use, and Dawn crashes at
 * random afterwards.
 */
const liveDawnInstances = new Map<string, GPU>();

function platformBackend(): DawnBackendType {
  if (typeof process === "undefined") {
    return "vulkan";
  }
  if (process.platform === "darwin") {
    return "metal";
  }
  return process.platform === "win32" ? "d3d12" : "vulkan";
}

async function gpuEntry(backendType: DawnBackendType | undefined): Promise<{
  gpu: GPU;
  backendType: string;
}> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu !== undefined && backendType === undefined) {
    return { gpu: nav.gpu, backendType: "browser" };
  }
  const type = backendType ?? platformBackend();
  let gpu = liveDawnInstances.get(type);
  if (gpu === undefined) {
    let dawn: { create(flags: string[]): GPU; globals: Record<string, unknown> };
    try {
      dawn = (await import("webgpu")) as unknown as typeof dawn;
    } catch (error) {
      throw new EngineError(
        EngineErrorCode.BACKEND_UNAVAILABLE,
        `could not load Dawn (the "webgpu" package) - ${(error as Error).message}.`,
        { cause: error },
      );
    }
    // Dawn's enums (GPUBufferUsage, GPUMapMode, …) as the browser has them.
    for (const [name, value] of Object.entries(dawn.globals)) {
      if (!(name in globalThis)) {
        (globalThis as Record<string, unknown>)[name] = value;
      }
    }
    gpu = dawn.create([`backend=${type}`]);
    liveDawnInstances.set(type, gpu);
  }
  return { gpu, backendType: type };
}

function reportOf(adapter: GPUAdapter, backendType: string): AdapterReport {
  const info = adapter.info;
  const limits: Record<string, number> = {};
  for (const key in adapter.limits) {
    const value = (adapter.limits as unknown as Record<string, unknown>)[key];
    if (typeof value === "number") {
      limits[key] = value;
    }
  }
  return {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    backendType,
    features: [...adapter.features].sort(),
    limits,
  };
}

/** The adapter a device would be created on, or a typed error saying why there is none. */
export async function requestAdapter(
  options: RequestGpuOptions = {},
): Promise<{ adapter: GPUAdapter; report: AdapterReport }> {
  const { gpu, backendType } = await gpuEntry(options.backendType);
  const adapter = await gpu.requestAdapter({
    powerPreference: options.powerPreference ?? "high-performance",
  });
  if (adapter === null) {
    throw new EngineError(
      EngineErrorCode.BACKEND_UNAVAILABLE,
      `could not get a WebGPU adapter (${backendType}) - no ${backendType} driver answered.\nOn Linux, install a Vulkan driver (e.g. mesa-vulkan-drivers) or point VK_DRIVER_FILES at one.`,
    );
  }
  const report = reportOf(adapter, backendType);
  const wanted = options.adapterName?.toLowerCase();
  if (
    wanted !== undefined &&
    ![report.description, report.device, report.vendor].some((s) =>
      s.toLowerCase().includes(wanted),
    )
  ) {
    throw new EngineError(
      EngineErrorCode.BACKEND_UNAVAILABLE,
      `could not find a WebGPU adapter named "${options.adapterName}" - the adapter is "${report.description}".`,
    );
  }
  return { adapter, report };
}

/** Features the kernels use when the adapter has them. */
const OPTIONAL_FEATURES: readonly GPUFeatureName[] = ["shader-f16", "subgroups", "timestamp-query"];

/**
 * A device with the adapter's largest buffer limits (the kernels split what still does not fit)
 * and the optional features the kernels can use.
 */
export async function requestGpu(options: RequestGpuOptions = {}): Promise<GpuHandle> {
  const { adapter, report } = await requestAdapter(options);
  const limits = adapter.limits;
  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
      maxBufferSize: limits.maxBufferSize,
      maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: limits.maxComputeWorkgroupSizeX,
      maxStorageBuffersPerShaderStage: limits.maxStorageBuffersPerShaderStage,
      maxComputeWorkgroupsPerDimension: limits.maxComputeWorkgroupsPerDimension,
    },
  });
  let released = false;
  return {
    adapter,
    device,
    report,
    release(): void {
      if (!released) {
        released = true;
        device.destroy();
      }
    },
  };
}
