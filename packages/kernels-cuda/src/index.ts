import type { Backend } from "@bitnet-ts/engine-core";
import type { KernelRules } from "@bitnet-ts/receipts/rules";
import { CudaBackend, type CudaBackendOptions } from "./backend";
import { CUDA_KERNEL_RULES } from "./kernel-rules";

export { type CudaAvailability, cudaAvailability } from "./availability";
export { CudaBackend, type CudaBackendOptions, type CudaMemory, CudaModel } from "./backend";
export { CUDA_KERNEL_RULES } from "./kernel-rules";
export { addonFiles, buildProblem, CudaError, CudaUnavailableError } from "./loader";
export {
  type CudaDevice,
  CudaKernels,
  type CudaStatus,
  type I2sLinearInput,
  type I2sLinearOutput,
  KERNEL_TABLE_SHAPES,
  type KernelTableRow,
  type TernaryKernel,
  type Where,
} from "./native";

/** The rules receipts from this backend are verified against (engine-core's BackendModule). */
export const kernelRules: KernelRules = CUDA_KERNEL_RULES;

/** engine-core's loader entry: the CUDA backend, or CudaUnavailableError with the reason. */
export function createBackend(options?: Readonly<Record<string, unknown>>): Backend {
  return new CudaBackend((options ?? {}) as CudaBackendOptions);
}
