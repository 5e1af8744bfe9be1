export { formatVerifyReport } from "./format";
export { sha256File } from "./hash";
export { type KernelRules, ONE_CALL_PER_PROJECTION, SEVEN_PROJECTIONS } from "./rules";
export {
  type BackendSection,
  type BenchSection,
  type DeviceSection,
  type ModelSection,
  RECEIPT_SCHEMA_VERSION,
  RunReceipt,
  receiptJsonSchema,
  type SamplingSection,
  type TimingsSection,
} from "./schema";
export {
  type GateName,
  type GateResult,
  type VerifyOptions,
  type VerifyReport,
  verifyReceipt,
} from "./verify";
