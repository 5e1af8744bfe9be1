export { Candidates } from "./candidates";
export { Mt19937 } from "./mt19937";
export {
  applyLogitBias,
  applyPenalties,
  argmax,
  minP,
  type PenaltySettings,
  temperature,
  topK,
  topP,
  typical,
} from "./processors";
export {
  DEFAULT_SAMPLING,
  Sampler,
  type SamplerOptions,
  SamplingError,
  type SamplingSettings,
  validateSampling,
} from "./sampler";
