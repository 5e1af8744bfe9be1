/**
 * What the Node entry (index.ts) and the browser entry (browser.ts) export alike: the report's
 * types, the parsers and the summaries. Nothing reachable from here imports a Node builtin.
 */
export {
  type CacheInfo,
  type CpuFeatures,
  type CpuInfo,
  featuresFromFlags,
  parseProcCpuinfo,
} from "./cpu";
export {
  type CudaDevice,
  type CudaInfo,
  type MetalInfo,
  parseNvccVersion,
  parseNvidiaSmi,
} from "./gpu";
export { cpuSimdLevel, type DeviceReport, type MemoryInfo, summarizeDevice } from "./report";
