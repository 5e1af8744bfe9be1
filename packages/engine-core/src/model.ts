/**
 * A model as backends see it: hyperparameters, the forward graph and the bound weight tensors,
 * validated against the architecture's tensor list.
 */
import {
  type ByteSource,
  type GgufFile,
  type GgufTensorInfo,
  readGgufFile,
  readGgufFrom,
} from "@bitnet-ts/gguf";
import { type ArchOptions, findArchitecture, type TensorSpec } from "./arch";
import { EngineError, EngineErrorCode } from "./errors";
import type { Graph } from "./graph";
import type { HParams } from "./hparams";

export interface BoundTensor {
  readonly info: GgufTensorInfo;
  /**
   * The tensor's bytes, a zero-copy view of the file in memory. Throws `ENGINE_NO_TENSOR_DATA`
   * when the file is not in memory (read without its data, or from a byte source): use `read()`,
   * which works for every description (native backends map the file and only need `info`).
   */
  readonly data: Uint8Array;
  /**
   * The tensor's bytes, wherever the model is: the same view as `data` when the file is in
   * memory, else one read of this tensor's range (from the byte source, or the file reopened by
   * path). Callers must not write to the result.
   */
  read(): Promise<Uint8Array>;
}

export interface ModelDescription {
  /** The GGUF path, for backends that map the file themselves (undefined for a byte source). */
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
        if (!file.hasTensorData) {
          throw new EngineError(
            EngineErrorCode.NO_TENSOR_DATA,
            `could not use the data of tensor "${info.name}" - the model's file is not in memory (it was read without its data, or from a byte source).\nAwait tensor.read() instead, or read the model with { tensorData: true }.`,
          );
        }
        return file.tensorData(info);
      },
      read: () => file.readTensorData(info),
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

/** Options for {@link readModelDescription} and {@link readModelDescriptionFrom}. */
export interface ReadDescriptionOptions extends DescribeOptions {
  /** Read the whole file into memory, so `BoundTensor.data` works (see each function's default). */
  readonly tensorData?: boolean;
}

/**
 * Reads and describes a GGUF file (Node only: the browser build throws `GGUF_NODE_ONLY`; use
 * {@link readModelDescriptionFrom}). With `tensorData: false` only the header is read (native
 * backends map the file themselves; `BoundTensor.read()` reopens the file for a tensor).
 */
export async function readModelDescription(
  path: string,
  options: ReadDescriptionOptions = {},
): Promise<ModelDescription> {
  const { tensorData = true, ...rest } = options;
  const file = await readGgufFile(path, { tensorData });
  return describeModel(file, rest, path);
}

/**
 * Reads and describes a model from any byte source (a `File`, an HTTP URL with range requests,
 * bytes in memory, a file descriptor): only the header is read; each tensor is read from the
 * source when a backend asks for it (`BoundTensor.read()`), so keep the source open until the
 * model is compiled. Runs in browsers.
 *
 * @example
 * const source = await openHttpSource("https://example.com/ggml-model-i2_s.gguf");
 * const description = await readModelDescriptionFrom(source);
 * const model = await new ReferenceBackend().compile(description);
 */
export async function readModelDescriptionFrom(
  source: ByteSource,
  options: ReadDescriptionOptions = {},
): Promise<ModelDescription> {
  const { tensorData = false, ...rest } = options;
  const file = await readGgufFrom(source, { tensorData });
  return describeModel(file, rest);
}
