import { type CpuBackendOptions, CpuBackend } from "./backend";

export { CpuBackend, type CpuBackendOptions, expectedKernelPath } from "./backend";
export type { NativeBinding, NativeModel, NativeModelConfig } from "./binding";
export { KernelUnavailableError, loadBinding } from "./loader";

/** Entry point engine-core's backend selection imports dynamically ("cpu"). */
export function createBackend(options: CpuBackendOptions = {}): CpuBackend {
  return new CpuBackend(options);
}
