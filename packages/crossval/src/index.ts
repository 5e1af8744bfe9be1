export {
  type CrossvalOptions,
  type CrossvalReport,
  crossvalidate,
  type EngineReport,
  formatReport,
} from "./crossval";
export { ReferenceUnavailableError } from "./errors";
export { type LlamaReference, loadNodeLlamaCpp, openLlamaCpu, openLlamaReference } from "./llama";
export { type LlamaBenchOptions, type LlamaBenchSession, openLlamaBench } from "./llama-bench";
export {
  argmaxOf,
  comparePosition,
  type PositionMetrics,
  type Summary,
  summarize,
  topIndices,
} from "./metrics";
export { llamaPerplexity } from "./perplexity";
