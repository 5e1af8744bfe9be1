export { DTYPE_BYTES, type Dtype } from "./dtypes";
export { SafetensorsError, SafetensorsErrorCode } from "./errors";
export {
  MAX_DIMS,
  MAX_HEADER_BYTES,
  openSafetensors,
  parseHeader,
  parseSafetensors,
  type SafetensorsFile,
  type SafetensorsTensorInfo,
} from "./reader";
export { openShardedSafetensors } from "./sharded";
export { encodeSafetensors, type SafetensorsTensor, writeSafetensors } from "./writer";
