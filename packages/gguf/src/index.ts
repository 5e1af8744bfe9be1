export { GgufError, GgufErrorCode } from "./errors";
export { type ReadGgufFileOptions, readGgufFile, readGgufFileSync } from "./file";
export {
  findGgmlType,
  findGgmlTypeByName,
  GGML_TYPES,
  type GgmlTypeInfo,
  type GgmlTypeName,
  tensorByteSize,
  tensorByteSizeBig,
} from "./ggml-types";
export * as limits from "./limits";
export {
  type GgufArrayData,
  type GgufArrayValue,
  GgufMetadata,
  type GgufValue,
  GgufValueType,
  gguf,
  type MetadataJsonOptions,
  metadataValueToJson,
  shortestFloat32,
  valueTypeName,
} from "./metadata";
export { alignUp, GgufFile, type GgufTensorInfo, type ParseGgufOptions, parseGguf } from "./reader";
export { GgufWriter, type GgufWriterOptions, type TensorData, type WriteProgress } from "./writer";
