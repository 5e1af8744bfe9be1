export {
  agreeUnder,
  CONTRACT_OTHER,
  CONTRACT_PROMPT,
  type ContractOptions,
  describeBackendContract,
  logitsBatched,
  logitsOneByOne,
  sameBits,
} from "./contract";
export { greedyTokens } from "./greedy";
export {
  captureReference,
  compareOpByOp,
  describeOpByOp,
  EXACT_OP_TOLERANCES,
  OP_KINDS,
  type OpByOpCandidate,
  type OpByOpOptions,
  type OpByOpStep,
  type OpError,
  type OpKind,
  type OpTolerances,
  opKind,
  opViolations,
  type ReferenceCapture,
  relativeError,
} from "./op-by-op";
