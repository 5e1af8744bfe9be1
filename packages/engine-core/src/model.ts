/**
 * A model as backends see it: hyperparameters, the forward graph and the bound weight tensors,
 * validated against the architecture's tensor list.
 */
import { type GgufFile, type GgufTensorInfo, readGgufFile } from "@bitnet-ts/gguf";
import { type ArchOptions, findArchitecture, type TensorSpec } from "./arch";
import { EngineError, EngineErrorCode } from "./errors";
import type { Graph } from "./graph";
import type { HParams } from "./hparams";

export interface BoundTensor {
  readonly info: GgufTensorInfo;
  /**
   * The tensor's bytes, a zero-copy view of the file in memory. Throws when the model was read
   * without its data (native backends map the file themselves and only need `info`).
   */
  readonly data: Uint8Array;
}

export interface ModelDescription {
  readonly path: string | undefined;
  readonly file: GgufFile;
  readonly hparams: HParams;
  readonly graph: Graph;
  readonly tensors: ReadonlyMap<string, BoundTensor>;
}

export interface DescribeOptions extends ArchOptions {}

/** Validates a parsed GGUF file (with tensor data) against its architecture and builds the graph. */
export function describeModel(
  file: GgufFile,
  options: DescribeOptions = {},
  path?: string,
): ModelDescription {
  const archName = file.metadata.getString("general.architecture");
  if (archName === undefined) {
    throw new EngineError(
      EngineErrorCode.UNSUPPORTED_ARCH,
      'could not load the model - "general.architecture" is missing from the file.',
    );
  }
  const arch = findArchitecture(archName);
  let hparams = arch.hparams(file.metadata, archName, options);
  const embd = file.findTensor("token_embd.weight");
  if (embd !== undefined && embd.shape.length === 2) {
    const rows = embd.shape[1]!;
    if (hparams.vocabSize !== 0 && hparams.vocabSize !== rows) {
      throw new EngineError(
        EngineErrorCode.BAD_TENSOR_SHAPE,
        `could not load the model - the vocabulary has ${hparams.vocabSize} tokens but "token_embd.weight" has ${rows} rows.`,
      );
    }
    hparams = { ...hparams, vocabSize: rows };
  }
  const tensors = new Map<string, BoundTensor>();
  for (const spec of arch.tensors(hparams)) {
    const info = file.findTensor(spec.name);
    if (info === undefined) {
      if (spec.optional) {
        continue;
      }
      throw new EngineError(
        EngineErrorCode.MISSING_TENSOR,
        `could not load the model - tensor "${spec.name}" is missing.\nA ${archName} model with ${hparams.nLayer} layers needs it.`,
      );
    }
    checkTensor(spec, info);
    tensors.set(spec.name, {
      info,
      get data(): Uint8Array {
        return file.tensorData(info);
      },
    });
  }
  const graph = arch.graph(hparams, (name) => tensors.has(name));
  return { path, file, hparams, graph, tensors };
}

function checkTensor(spec: TensorSpec, info: GgufTensorInfo): void {
  const shape = [...info.shape];
  while (shape.length > spec.shape.length && shape[shape.length - 1] === 1) {
    shape.pop(); // trailing 1s are the same tensor
  }
  if (shape.length !== spec.shape.length || shape.some((d, i) => d !== spec.shape[i])) {
    throw new EngineError(
      EngineErrorCode.BAD_TENSOR_SHAPE,
      `could not load the model - tensor "${spec.name}" has shape [${info.shape.join(", ")}].\nExpected [${spec.shape.join(", ")}] (ggml order).`,
    );
  }
  if (!spec.types.includes(info.type.name)) {
    throw new EngineError(
      EngineErrorCode.BAD_TENSOR_TYPE,
      `could not load the model - tensor "${spec.name}" has type ${info.type.name}.\nExpected one of ${spec.types.join(", ")}.`,
    );
  }
}

/**
 * Reads and describes a GGUF file. With `tensorData: false` only the header is read (native
 * backends map the file themselves); the reference backend needs the data in memory.
 */
export async function readModelDescription(
  path: string,
  options: DescribeOptions & { readonly tensorData?: boolean } = {},
): Promise<ModelDescription> {
  const { tensorData = true, ...rest } = options;
  const file = await readGgufFile(path, { tensorData });
  return describeModel(file, rest, path);
}
