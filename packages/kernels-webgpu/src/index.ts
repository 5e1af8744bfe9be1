import type { KernelRules } from "@bitnet-ts/receipts/rules";
import { WebGpuBackend, type WebGpuBackendOptions } from "./backend";
import { WEBGPU_KERNEL_RULES } from "./kernel-rules";

export {
  type AdapterReport,
  type DawnBackendType,
  type GpuHandle,
  type RequestGpuOptions,
  requestAdapter,
  requestGpu,
} from "./adapter";
export { GPU_TOP_K_MAX, WebGpuBackend, type WebGpuBackendOptions, WebGpuModel } from "./backend";
export { WEBGPU_KERNEL_RULES } from "./kernel-rules";

/** The rules receipts from this backend are verified against (engine-core's kernelRulesFor). */
export const kernelRules: KernelRules = WEBGPU_KERNEL_RULES;

/** Entry point engine-core's backend selection imports dynamically ("webgpu", alias "metal"). */
export function createBackend(options: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
  return WebGpuBackend.create(options);
}
