import { CpuBackend, type CpuBackendOptions } from "./backend";

export { CpuBackend, type CpuBackendOptions, CpuModel, expectedKernelPath } from "./backend";
export {
  type BandwidthResult,
  type MeasureBandwidthOptions,
  measureReadBandwidth,
} from "./bandwidth";
export type { BandwidthProbe, NativeBinding, NativeModel, NativeModelConfig } from "./binding";
export {
  type BindingCandidate,
  bindingCandidates,
  KernelUnavailableError,
  loadBinding,
  loadBindingFrom,
} from "./loader";

/** Entry point engine-core's backend selection imports dynamically ("cpu"). */
export function createBackend(options: CpuBackendOptions = {}): CpuBackend {
  return new CpuBackend(options);
}
