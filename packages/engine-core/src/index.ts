export {
  ARCHITECTURES,
  type Architecture,
  type ArchOptions,
  findArchitecture,
  type TensorSpec,
} from "./arch";
export type {
  Backend,
  CaptureRequest,
  CompiledModel,
  CompileOptions,
  RunLogits,
  SequenceRun,
  StepResult,
} from "./backend";
export { EngineError, EngineErrorCode } from "./errors";
export { type Graph, GraphBuilder, type GraphOp, type GraphOpKind } from "./graph";
export { type FfnActivation, type HParams, readHParams } from "./hparams";
export { type LoadModelOptions, loadModel } from "./load";
export {
  type BoundTensor,
  type DescribeOptions,
  describeModel,
  type ModelDescription,
  readModelDescription,
} from "./model";
export { ReferenceBackend, type ReferenceBackendOptions } from "./reference/backend";
export { type Numerics, ternaryDot } from "./reference/ops";
export {
  autoOrder,
  type BackendLoader,
  type BackendName,
  type NativeBackendOptions,
  registerBackend,
  type SelectBackendOptions,
  selectBackend,
} from "./select";
export { type SequenceLength, SequenceTable } from "./sequences";
export { validateStep } from "./validate";
