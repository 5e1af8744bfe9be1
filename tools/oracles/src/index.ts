export {
  type ActivationQuant,
  type FfnActivation,
  type SpecLayer,
  type SpecLinear,
  SpecModel,
  type SpecOptions,
  type SpecSession,
  type SpecWeights,
} from "./spec-forward";
