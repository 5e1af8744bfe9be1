export {
  absmean,
  type Checkpoint,
  type CheckpointLayout,
  checkTensors,
  openCheckpoint,
  readTernary,
  type TernaryTensor,
} from "./checkpoint";
export {
  CONFIG_DEFAULTS,
  type ConfigClass,
  type ConfigDefaults,
  type HfConfig,
  HfConfigSchema,
  type ResolvedConfig,
  readConfig,
  resolveConfig,
} from "./config";
export {
  buildConversion,
  type ConvertArch,
  type ConvertOptions,
  type ConvertSummary,
  convertCheckpoint,
  type EmbeddingType,
  encodeTernaryAsFloat,
  type FallbackType,
  FILE_TYPE,
  packTernary,
  type TernaryType,
  ternaryFallback,
} from "./convert";
export { ConvertError, ConvertErrorCode } from "./errors";
export {
  type EmbeddingChange,
  type QuantizeOptions,
  type QuantizeSummary,
  quantizeGguf,
} from "./quantize";
export { type GgufVocab, readVocab } from "./tokenizer";
