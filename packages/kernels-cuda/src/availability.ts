/** Whether the CUDA kernels can run here, and if not, why: for `bitnet info`, tests and logs. */
import { buildProblem } from "./loader";
import { type CudaDevice, CudaKernels } from "./native";

export type CudaAvailability =
  | {
      readonly available: true;
      readonly runtimeVersion: number;
      readonly devices: readonly CudaDevice[];
    }
  | { readonly available: false; readonly reason: string; readonly addonLoaded: boolean };

/** Loads the addon and asks the driver; never throws. */
export function cudaAvailability(addonPath?: string): CudaAvailability {
  let kernels: CudaKernels;
  try {
    kernels = new CudaKernels(addonPath);
  } catch (error) {
    return { available: false, reason: (error as Error).message, addonLoaded: false };
  }
  const s = kernels.status();
  if (!s.deviceCode) {
    return {
      available: false,
      reason: buildProblem() ?? s.error ?? "the CUDA addon was built without GPU code",
      addonLoaded: true,
    };
  }
  if (s.deviceCount === 0) {
    return {
      available: false,
      reason: `no CUDA GPU: ${s.error ?? "the driver reports no CUDA device"}`,
      addonLoaded: true,
    };
  }
  return { available: true, runtimeVersion: s.runtimeVersion, devices: s.devices };
}
