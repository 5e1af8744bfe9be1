export { ChatSession, type ChatSessionOptions, type ContextShift } from "./chat";
export { GenerationError, GenerationErrorCode } from "./errors";
export {
  type FinishReason,
  type GenerateOptions,
  type Generation,
  type GenerationResult,
  type GenerationTimings,
  type GeneratorOptions,
  TextGenerator,
  type TextGeneratorOptions,
} from "./generator";
export {
  PromptCache,
  type PromptCacheLookup,
  type PromptCacheOptions,
  type PromptCacheStats,
} from "./prompt-cache";
export { Scheduler, type SchedulerJob, type SchedulerOptions } from "./scheduler";
export { StopMatcher } from "./stop";
export {
  type EvaluateOptions,
  evaluateLogits,
  logProbability,
  type PerplexityOptions,
  type PerplexityResult,
  perplexity,
} from "./tasks";
