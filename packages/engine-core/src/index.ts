export {
  ARCHITECTURES,
  type Architecture,
  type ArchOptions,
  findArchitecture,
  type TensorSpec,
} from "./arch";
export type {
  Backend,
  BackendDescription,
  BackendModule,
  BackendOptions,
  BackendOptionsByName,
  BatchInvariance,
  Capacity,
  CaptureRequest,
  CompiledModel,
  CompileOptions,
  LoadProgress,
  LogitsReduction,
  RunLogits,
  SequenceRun,
  StepOutput,
  StepResult,
  TopLogits,
} from "./backend";
export { EngineError, EngineErrorCode } from "./errors";
export { type Graph, GraphBuilder, type GraphOp, type GraphOpKind, NATIVE_OP_IDS } from "./graph";
export { type FfnActivation, type HParams, readHParams } from "./hparams";
export { type LoadModelOptions, loadModel } from "./load";
export {
  type BoundTensor,
  type DescribeOptions,
  describeModel,
  type ModelDescription,
  type ReadDescriptionOptions,
  readModelDescription,
  readModelDescriptionFrom,
} from "./model";
export {
  REFERENCE_KERNEL_RULES,
  ReferenceBackend,
  type ReferenceBackendOptions,
} from "./reference/backend";
export { type Numerics, ternaryDot } from "./reference/ops";
export { decodeFloats } from "./reference/weights";
export {
  autoOrder,
  type BackendLoader,
  type BackendName,
  type BackendRegistration,
  type BackendStatus,
  kernelRulesFor,
  loadBackendModule,
  probeBackends,
  registerBackend,
  registeredBackends,
  resetBackendRegistry,
  type SelectBackendOptions,
  selectBackend,
} from "./select";
export { type SequenceLength, SequenceTable } from "./sequences";
export {
  argmaxRows,
  checkReduction,
  type FlatStep,
  flattenRuns,
  forEachRunRows,
  reduceRows,
  StepQueue,
  splitLogits,
  type TopKRowsFunction,
  topKRows,
} from "./steps";
export {
  checkStepBuffers,
  type NativeStepPlan,
  planNativeStep,
  type StepChunk,
  stepChunks,
  validateStep,
} from "./validate";
