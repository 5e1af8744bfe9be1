import type { KernelRules } from "@bitnet-ts/receipts";
import { CpuBackend, type CpuBackendOptions } from "./backend";
import { CPU_KERNEL_RULES } from "./kernel-rules";

export { CpuBackend, type CpuBackendOptions, CpuModel, expectedKernelPath } from "./backend";
export {
  type BandwidthResult,
  type MeasureBandwidthOptions,
  measureReadBandwidth,
} from "./bandwidth";
export type {
  BandwidthProbe,
  HeadQuantization,
  NativeBinding,
  NativeLoadPhase,
  NativeModel,
  NativeModelConfig,
} from "./binding";
export { KERNEL_PATHS, type KernelPath } from "./kernel-paths";
export { CPU_KERNEL_RULES } from "./kernel-rules";
export {
  type BindingCandidate,
  BUILD_FAILURE_FILE,
  bindingCandidates,
  KernelUnavailableError,
  type LoadBindingOptions,
  loadBinding,
  loadBindingFrom,
  type NativeBuildFailure,
  nativeBuildFailure,
} from "./loader";

/** The rules receipts from this backend are verified against (engine-core's kernelRulesFor). */
export const kernelRules: KernelRules = CPU_KERNEL_RULES;

/** Entry point engine-core's backend selection imports dynamically ("cpu"). */
export function createBackend(options: CpuBackendOptions = {}): CpuBackend {
  return new CpuBackend(options);
}
