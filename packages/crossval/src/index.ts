export {
  type CrossvalOptions,
  type CrossvalReport,
  crossvalidate,
  type EngineReport,
  formatReport,
  type LlamaRun,
  type LlamaRunOptions,
  type LlamaRuns,
  runLlama,
} from "./crossval";
export {
  LlamaCannotLoadError,
  LlamaCpuVariantMismatchError,
  LlamaCpuVariantUnsupportedError,
  LlamaRunsMismatchError,
  ReferenceUnavailableError,
} from "./errors";
export {
  identifyLlamaCpuBackend,
  type LlamaCpuBackend,
  type LlamaReference,
  llamaCpuVariantMismatch,
  loadNodeLlamaCpp,
  type OpenLlamaCpuOptions,
  openLlamaCpu,
  openLlamaReference,
} from "./llama";
export { type LlamaBenchOptions, type LlamaBenchSession, openLlamaBench } from "./llama-bench";
export { assertLlamaCanLoad } from "./llama-loadable";
export {
  assertLlamaCpuVariantRunnable,
  defaultLlamaVariantCacheDir,
  GGML_X86_CPU_VARIANTS,
  type GgmlCpuFeature,
  isaFeaturesOf,
  LLAMA_CPU_VARIANT_FOR_KERNEL_PATH,
  type LlamaVariantCopy,
  llamaCpuVariantFor,
  llamaCpuVariantLacks,
  mappedLlamaCpuVariants,
  prebuiltCpuBinsDir,
  prepareLlamaVariantCopy,
  shippedLlamaCpuVariants,
  variantFromSystemInfo,
} from "./llama-variant";
export {
  argmaxOf,
  comparePosition,
  type PositionMetrics,
  type Summary,
  summarize,
  topIndices,
} from "./metrics";
export { llamaPerplexity } from "./perplexity";
