/**
 * Everything the Node entry (index.ts) and the browser entry (browser.ts) export alike: no module
 * reachable from here imports a Node builtin. The tools/browser-check test bundles the browser
 * entry for the browser and fails if one gets in.
 */
export { GgufError, GgufErrorCode } from "./errors";
export {
  findGgmlType,
  findGgmlTypeByName,
  GGML_TYPES,
  type GgmlTypeInfo,
  type GgmlTypeName,
  tensorByteSize,
  tensorByteSizeBig,
} from "./ggml-types";
export { type HttpSourceOptions, openHttpSource } from "./http-source";
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
export { type ReadGgufOptions, readGgufFrom } from "./read";
export { alignUp, GgufFile, type GgufTensorInfo, type ParseGgufOptions, parseGguf } from "./reader";
export { type ByteSource, blobSource, bytesSource } from "./source";
export { GgufStringList, isWellFormedUtf8 } from "./string-list";
export type { ChunkSink, GgufWriterOptions, TensorData, WriteProgress } from "./writer";
