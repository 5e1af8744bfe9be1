export {
  absmean,
  type Checkpoint,
  type CheckpointLayout,
  checkTensors,
  openCheckpoint,
  readTernary,
  type TernaryTensor,
} from "./checkpoint";
export { type HfConfig, HfConfigSchema, readConfig } from "./config";
export {
  buildConversion,
  type ConvertArch,
  type ConvertOptions,
  type ConvertSummary,
  convertCheckpoint,
  type EmbeddingType,
  FILE_TYPE,
  packTernary,
  type TernaryType,
} from "./convert";
export { ConvertError, ConvertErrorCode } from "./errors";
export { type QuantizeOptions, type QuantizeSummary, quantizeGguf } from "./quantize";
export { type GgufVocab, readVocab } from "./tokenizer";
