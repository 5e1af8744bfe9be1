export { ChatSession, type ChatSessionOptions, type ContextShift } from "./chat";
export {
  type Drafter,
  type DraftSession,
  lookupDraft,
  ModelDrafter,
  type ModelDrafterOptions,
  PromptLookupDrafter,
  type PromptLookupOptions,
} from "./draft";
export { type LoadDrafterOptions, type LoadedDrafter, loadDrafter } from "./draft-load";
export { GenerationError, GenerationErrorCode } from "./errors";
export {
  type FinishReason,
  type GenerateOptions,
  type Generation,
  type GenerationResult,
  type GenerationTimings,
  type GeneratorOptions,
  type SpeculativeStats,
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
