/**
 * The CUDA backend: uploads the weights once (src/weights.ts), compiles engine-core's graph into
 * the addon's op list, and runs each forward step as one async native call: every op on the GPU,
 * only the requested logits copied back.
 *
 * `execution: "host"` runs the same model code on the CPU through the kernels' host twins
 * (native/host.cc): slow, for checking the orchestration and arithmetic where there is no GPU.
 */
import {
  type Backend,
  type BackendDescription,
  type Capacity,
  type CaptureRequest,
  type CompiledModel,
  type CompileOptions,
  EngineError,
  EngineErrorCode,
  forEachRunRows,
  type GraphOp,
  type ModelDescription,
  NATIVE_OP_IDS,
  planNativeStep,
  type RunLogits,
  reduceRows,
  type SequenceRun,
  SequenceTable,
  type StepOutput,
  StepQueue,
  splitLogits,
  stepChunks,
} from "@bitnet-ts/engine-core";
import { loadAddon } from "./loader";
import { CudaKernels } from "./native";
import {
  type DeviceWeight,
  floatWeight,
  scalarWeight,
  TERNARY_TYPES,
  ternaryWeight,
  vectorWeight,
} from "./weights";

declare module "@bitnet-ts/engine-core" {
  interface BackendOptionsByName {
    cuda: CudaBackendOptions;
  }
}

// A type, not an interface: engine-core's BackendOptions needs an index signature, which only
// object types get implicitly.
export type CudaBackendOptions = {
  /** CUDA device index (default 0; env BITNET_CUDA_DEVICE). */
  readonly device?: number;
  /** Most tokens per native step (default 256); longer steps are split. */
  readonly maxBatch?: number;
  /**
   * "device" (default): run on the GPU. "host": run the same model code on the CPU through the
   * kernels' host twins (slow; for tests where there is no GPU). Env BITNET_CUDA_EXECUTION.
   */
  readonly execution?: "device" | "host";
  /** Explicit path to the compiled addon. */
  readonly addonPath?: string;
};

interface NativeModel {
  setWeight(
    index: number,
    kind: number,
    rows: number,
    cols: number,
    bytes: Uint8Array | null,
    scales: Float32Array | null,
    scalar: number,
  ): void;
  finish(): void;
  createSequence(id: number): void;
  forkSequence(from: number, to: number): void;
  freeSequence(id: number): void;
  step(
    tokens: Int32Array,
    sequences: Int32Array,
    positions: Int32Array,
    want: Uint8Array,
    logits: Float32Array,
    captureIds: Int32Array,
    captureOut: Float32Array[],
    injectIds: Int32Array,
    injectData: Float32Array[],
    rowK: Int32Array,
    top: Int32Array,
  ): Promise<void>;
  memory(): CudaMemory;
  /** Per op, 1 where it runs inside another op's launch in steps that inject no buffers. */
  fusedOps(): Uint8Array;
  dispose(): void;
}

/** GPU memory a compiled model holds, and what the device has free. */
export interface CudaMemory {
  readonly weightBytes: number;
  readonly scratchBytes: number;
  readonly kvBytes: number;
  readonly freeBytes: number;
  readonly totalBytes: number;
  readonly kvBytesPerToken: number;
  readonly executor: "cuda" | "host";
}

type NativeModelClass = new (
  spec: Record<string, unknown>,
  where: "device" | "host",
) => NativeModel;

export class CudaBackend implements Backend {
  readonly name = "cuda";
  /** Weights are read through BoundTensor.read() and uploaded once. */
  readonly needsTensorData = false;
  /** Warp reductions split sums across lanes in a fixed order: batched equals one by one. */
  readonly batchInvariance = "bit-exact";
  readonly kernels: CudaKernels;
  readonly #options: CudaBackendOptions;

  /** Throws CudaUnavailableError with the reason when the GPU cannot be used (device execution). */
  constructor(options: CudaBackendOptions = {}) {
    const fromEnv = process.env["BITNET_CUDA_EXECUTION"];
    if (options.execution === undefined && fromEnv !== undefined && fromEnv !== "") {
      if (fromEnv !== "device" && fromEnv !== "host") {
        throw new EngineError(
          EngineErrorCode.BAD_OPTION,
          `could not create the CUDA backend - BITNET_CUDA_EXECUTION must be device or host, got "${fromEnv}".`,
        );
      }
      options = { ...options, execution: fromEnv };
    }
    this.#options = options;
    this.kernels = new CudaKernels(options.addonPath);
    if ((options.execution ?? "device") === "device") {
      this.kernels.requireDevice();
    }
  }

  #device(): number {
    return this.#options.device ?? Number(process.env["BITNET_CUDA_DEVICE"] ?? 0);
  }

  describe(): BackendDescription {
    const s = this.kernels.status();
    const d = s.devices[this.#device()];
    if ((this.#options.execution ?? "device") === "host" || d === undefined) {
      return { device: "CPU (the CUDA kernels' host twins)", details: { execution: "host" } };
    }
    return {
      device: `${d.name} (sm_${d.computeCapability.replace(".", "")})`,
      details: {
        execution: "device",
        runtimeVersion: s.runtimeVersion,
        smCount: d.smCount,
        totalMemoryBytes: d.totalMemoryBytes,
      },
    };
  }

  async compile(model: ModelDescription, options: CompileOptions = {}): Promise<CudaModel> {
    const hp = model.hparams;
    const contextLength = options.contextLength ?? hp.contextLength;
    const maxBatch = this.#options.maxBatch ?? 256;
    for (const [name, value] of [
      ["context length", contextLength],
      ["maxBatch", maxBatch],
    ] as const) {
      if (!Number.isInteger(value) || value < 1) {
        throw new EngineError(
          EngineErrorCode.BAD_OPTION,
          `could not compile for the CUDA backend - ${name} must be a positive integer, got ${value}.`,
        );
      }
    }
    const tensor = (name: string) => {
      const t = model.tensors.get(name);
      if (t === undefined) {
        throw new EngineError(
          EngineErrorCode.MISSING_TENSOR,
          `could not compile - tensor "${name}" is not bound.`,
        );
      }
      return t;
    };
    // Weights by index, each with the role its first op gives it.
    const weightIndex = new Map<string, number>();
    const roles: { name: string; role: "ternary-or-float" | "table" | "vector" | "scalar" }[] = [];
    const weight = (name: string | undefined, role: (typeof roles)[number]["role"]): number => {
      if (name === undefined) {
        return -1;
      }
      let i = weightIndex.get(name);
      if (i === undefined) {
        tensor(name);
        i = roles.length;
        roles.push({ name, role });
        weightIndex.set(name, i);
      }
      return i;
    };
    const bufferNames = Object.keys(model.graph.buffers);
    const bufferId = new Map(bufferNames.map((n, i) => [n, i]));
    const b = (name: string): number => bufferId.get(name)!;
    const ops = model.graph.ops.map((op: GraphOp) => {
      const base = {
        kind: NATIVE_OP_IDS[op.kind],
        in0: -1,
        in1: -1,
        in2: -1,
        out: b(op.out),
        weight: -1,
        scale: -1,
        heads: 0,
        layer: 0,
        act: 0,
      };
      switch (op.kind) {
        case "embed":
          return { ...base, weight: weight(op.table, "table") };
        case "rms_norm":
          return { ...base, in0: b(op.x), weight: weight(op.weight, "vector") };
        case "linear":
          return {
            ...base,
            in0: b(op.x),
            weight: weight(op.weight, "ternary-or-float"),
            scale: weight(op.scale, "scalar"),
          };
        case "rope":
          return { ...base, in0: b(op.x), heads: op.heads };
        case "attention":
          return { ...base, in0: b(op.q), in1: b(op.k), in2: b(op.v), layer: op.layer };
        case "add":
          return { ...base, in0: b(op.a), in1: b(op.b) };
        case "glu":
          return {
            ...base,
            in0: b(op.gate),
            in1: b(op.up),
            act: op.activation === "relu2" ? 0 : 1,
          };
        case "output":
          return { ...base, in0: b(op.x), weight: weight(op.weight, "table") };
        default:
          throw new EngineError(
            EngineErrorCode.BAD_OPTION,
            `could not compile op "${(op as GraphOp).kind}" - the CUDA backend does not know it.`,
          );
      }
    });
    const where = this.#options.execution ?? "device";
    const { NativeCudaModel, maxDeviceTopK, tensorCoreMinTokens } = loadAddon(
      this.#options.addonPath,
    ) as {
      NativeCudaModel: NativeModelClass;
      maxDeviceTopK: number;
      tensorCoreMinTokens: () => number;
    };
    let native: NativeModel;
    try {
      native = new NativeCudaModel(
        {
          nEmbd: hp.nEmbd,
          nLayer: hp.nLayer,
          nHead: hp.nHead,
          nHeadKv: hp.nHeadKv,
          headDim: hp.headDim,
          nRot: hp.nRot,
          vocabSize: hp.vocabSize,
          contextLength,
          maxBatch,
          ropeFreqBase: hp.ropeFreqBase,
          rmsEps: hp.rmsEps,
          device: this.#device(),
          weightCount: roles.length,
          ops,
          bufferWidths: bufferNames.map((n) => model.graph.buffers[n]!),
        },
        where,
      );
    } catch (error) {
      throw new EngineError(
        EngineErrorCode.BACKEND_UNAVAILABLE,
        `could not compile the model for the CUDA backend - ${(error as Error).message}.`,
        { cause: error },
      );
    }
    const tags = new Map<string, string>();
    try {
      for (const [i, { name, role }] of roles.entries()) {
        const t = tensor(name);
        const data = await t.read();
        let w: DeviceWeight;
        if (role === "vector") {
          w = vectorWeight(t, data);
        } else if (role === "scalar") {
          w = scalarWeight(t, data);
        } else if (role === "ternary-or-float" && TERNARY_TYPES.has(t.info.type.name)) {
          w = ternaryWeight(t, data);
        } else {
          w = floatWeight(t, data);
        }
        tags.set(name, w.tag);
        native.setWeight(i, w.kind, w.rows, w.cols, w.bytes, w.scales, w.scalar);
        options.onProgress?.({ phase: "uploading weights", done: i + 1, total: roles.length });
      }
      native.finish();
    } catch (error) {
      native.dispose();
      if (error instanceof EngineError) {
        throw error;
      }
      const message = (error as Error).message;
      throw new EngineError(
        /out of GPU memory/.test(message)
          ? EngineErrorCode.OUT_OF_MEMORY
          : EngineErrorCode.BACKEND_UNAVAILABLE,
        `could not load the model on the GPU - ${message}.`,
        { cause: error },
      );
    }
    // Kernel ids per op, counted once per step ("cuda.<op>.<type>.<variant>").
    const kernelIds = model.graph.ops.map((op, i) => {
      switch (op.kind) {
        case "embed":
          return `cuda.embed.${tags.get(op.table)}`;
        case "rms_norm": {
          // The native model quantizes a norm's output in the norm's kernel when its first
          // reader is a ternary projection (model.cc, quantized_reader_).
          const reader = firstReader(model.graph.ops, i);
          const tag =
            reader?.kind === "linear" && reader.x === op.out ? tags.get(reader.weight)! : "";
          return tag === "i2_s"
            ? "cuda.rms_norm_quantize.i8"
            : tag.startsWith("tq")
              ? "cuda.rms_norm_quantize.q8_k"
              : "cuda.rms_norm.f32";
        }
        case "linear": {
          const tag = tags.get(op.weight)!;
          return tag === "i2_s"
            ? "cuda.linear.i2_s.dp4a"
            : tag.startsWith("tq")
              ? `cuda.linear.${tag}.dp4a`
              : `cuda.linear.${tag}.float`;
        }
        case "rope":
          return "cuda.rope.neox";
        case "attention":
          return "cuda.attention.gqa.f16kv";
        case "add":
          return "cuda.add.f32";
        case "glu":
          return `cuda.glu.${op.activation}`;
        default:
          return `cuda.output.${tags.get(op.weight)}`;
      }
    });
    // Ops that run inside another op's launch, except in steps that inject buffers (model.cc,
    // fused_ops): a residual add or a GLU inside the norm after it, a layer's two RoPEs with its
    // k/v stores. Their ids say so (".fused").
    const fused = native.fusedOps();
    for (let i = 0; i < kernelIds.length; i++) {
      if (fused[i] === 1) {
        kernelIds[i] = `${kernelIds[i]}.fused`;
      }
    }
    // BITNET_CUDA_DEVICE_TOP_K=0 brings every row back whole (engine-core reduces it on the host).
    const deviceTopK = process.env["BITNET_CUDA_DEVICE_TOP_K"] === "0" ? 0 : maxDeviceTopK;
    return new CudaModel(
      model,
      native,
      contextLength,
      maxBatch,
      bufferId,
      kernelIds,
      deviceTopK,
      tensorCoreMinTokens(),
    );
  }
}

interface SequenceState {
  length: number;
}

export class CudaModel implements CompiledModel {
  readonly description: ModelDescription;
  readonly backendName = "cuda";
  readonly contextLength: number;
  readonly #native: NativeModel;
  readonly #maxBatch: number;
  readonly #buffers: Map<string, number>;
  /**
   * Kernel ids per op for the four kinds of native call, computed once: [dp4a, tensor cores] ×
   * [residual adds fused, steps that inject buffers (the adds run alone)].
   */
  readonly #kernelIds: readonly (readonly string[])[];
  readonly #maxDeviceTopK: number;
  readonly #tensorCoreMinTokens: number;
  readonly #counts = new Map<string, number>();
  readonly #sequences = new SequenceTable<SequenceState>();
  readonly #steps = new StepQueue();
  /** Sequence changes wait for the step in flight (the native step reads the caches). */
  readonly #pending: (() => void)[] = [];
  #busy = false;

  constructor(
    description: ModelDescription,
    native: NativeModel,
    contextLength: number,
    maxBatch: number,
    buffers: Map<string, number>,
    kernelIds: readonly string[],
    maxDeviceTopK: number,
    tensorCoreMinTokens: number,
  ) {
    this.description = description;
    this.#maxDeviceTopK = maxDeviceTopK;
    this.#tensorCoreMinTokens = tensorCoreMinTokens;
    this.#native = native;
    this.contextLength = contextLength;
    this.#maxBatch = maxBatch;
    this.#buffers = buffers;
    this.#kernelIds = [false, true].flatMap((tensorCores) =>
      [false, true].map((injecting) =>
        kernelIds.map((id) => {
          const kernel = tensorCores ? id.replace(/\.dp4a$/, ".mma") : id;
          return injecting ? kernel.replace(/\.fused$/, "") : kernel;
        }),
      ),
    );
  }

  get sequenceCount(): number {
    return this.#sequences.size;
  }

  /** GPU memory of this model: weights, scratch and KV caches, and the device's free memory. */
  memory(): CudaMemory {
    return this.#native.memory();
  }

  kernelCounts(): ReadonlyMap<string, number> {
    return new Map(this.#counts);
  }

  capacity(): Capacity {
    this.#sequences.assertAlive();
    const m = this.#native.memory();
    return {
      kvBytesPerToken: m.kvBytesPerToken,
      // What the device has free once this model is loaded, plus what its caches already hold.
      kvBudgetBytes: m.executor === "cuda" ? m.freeBytes + m.kvBytes : Number.MAX_SAFE_INTEGER,
      kvUsedBytes: m.kvBytes,
      freeBytes: m.freeBytes,
      maxSequences: undefined,
      liveSequences: this.#sequences.size,
      contextLength: this.contextLength,
    };
  }

  #nativeCall(action: () => void): void {
    if (this.#busy) {
      this.#pending.push(action);
    } else {
      action();
    }
  }

  createSequence(): number {
    const id = this.#sequences.add({ length: 0 });
    this.#nativeCall(() => this.#native.createSequence(id));
    return id;
  }

  forkSequence(sequence: number): number {
    const src = this.#sequences.get(sequence);
    const id = this.#sequences.add({ length: src.length });
    this.#nativeCall(() => this.#native.forkSequence(sequence, id));
    return id;
  }

  truncateSequence(sequence: number, length: number): void {
    // The cache keeps its rows; positions from `length` on are written again before they are read.
    this.#sequences.truncate(sequence, length);
  }

  freeSequence(sequence: number): void {
    this.#sequences.delete(sequence);
    this.#nativeCall(() => this.#native.freeSequence(sequence));
  }

  sequenceLength(sequence: number): number {
    return this.#sequences.get(sequence).length;
  }

  step(runs: readonly SequenceRun[], capture?: CaptureRequest): Promise<StepOutput> {
    return this.#steps.run(() => this.#step(runs, capture, undefined));
  }

  stepWithInputs(
    runs: readonly SequenceRun[],
    inputs: ReadonlyMap<string, Float32Array>,
    capture: CaptureRequest,
  ): Promise<StepOutput> {
    return this.#steps.run(() => this.#step(runs, capture, inputs));
  }

  async #step(
    runs: readonly SequenceRun[],
    capture: CaptureRequest | undefined,
    inputs: ReadonlyMap<string, Float32Array> | undefined,
  ): Promise<StepOutput> {
    this.#sequences.assertAlive();
    const hp = this.description.hparams;
    const plan = planNativeStep({
      graph: this.description.graph,
      runs,
      capture,
      inputs,
      bufferIds: this.#buffers,
      lengthOf: (id) => this.#sequences.get(id).length,
      vocabSize: hp.vocabSize,
      contextLength: this.contextLength,
      maxTokensPerCall: this.#maxBatch,
    });
    const { flat, captured } = plan;
    const vocab = hp.vocabSize;
    // Per logit row, the top-k the GPU selects (1 for "argmax"); 0: the whole row comes back.
    const kmax = this.#maxDeviceTopK;
    const rowK = new Int32Array(flat.rows);
    let fullRows = 0;
    forEachRunRows(runs, flat.wantLogits, (run, row, rows) => {
      const k = deviceTopK(run.reduce, Math.min(kmax, vocab));
      rowK.fill(k, row, row + rows);
      fullRows += k === 0 ? rows : 0;
    });
    const logits = new Float32Array(fullRows > 0 ? flat.rows * vocab : 0);
    const reduced = fullRows < flat.rows;
    const top = new Int32Array(reduced ? flat.rows * 2 * kmax : 0);
    this.#busy = true;
    try {
      for (const chunk of stepChunks(flat, this.#maxBatch)) {
        await this.#native.step(
          flat.tokens.subarray(chunk.start, chunk.end),
          flat.sequences.subarray(chunk.start, chunk.end),
          flat.positions.subarray(chunk.start, chunk.end),
          chunk.want,
          logits.subarray(chunk.row * vocab, (chunk.row + chunk.rows) * vocab),
          plan.captureIds,
          plan.captureOut,
          plan.injectIds,
          plan.injectData,
          reduced ? rowK.subarray(chunk.row, chunk.row + chunk.rows) : NO_TOP,
          top.subarray(chunk.row * 2 * kmax, (chunk.row + chunk.rows) * 2 * kmax),
        );
        // Ternary projections of steps from tensorCoreMinTokens tokens on run on tensor cores;
        // steps that inject buffers run their residual adds alone.
        const tensorCores = chunk.end - chunk.start >= this.#tensorCoreMinTokens;
        const ids = this.#kernelIds[(tensorCores ? 2 : 0) + (plan.injectIds.length > 0 ? 1 : 0)]!;
        for (const [i, op] of this.description.graph.ops.entries()) {
          if (op.kind !== "output" || chunk.rows > 0) {
            const id = ids[i]!;
            this.#counts.set(id, (this.#counts.get(id) ?? 0) + 1);
          }
        }
      }
    } catch (error) {
      throw new EngineError(
        EngineErrorCode.BACKEND_UNAVAILABLE,
        `could not run a step on the ${this.#native.memory().executor === "host" ? "CUDA host twins" : "GPU"} - ${(error as Error).message}.`,
        { cause: error },
      );
    } finally {
      this.#busy = false;
      for (const action of this.#pending.splice(0)) {
        action();
      }
    }
    for (const run of runs) {
      this.#sequences.get(run.sequence).length += run.tokens.length;
    }
    const result =
      fullRows === flat.rows
        ? splitLogits(runs, flat, logits, vocab)
        : runsFromTop(runs, flat.wantLogits, rowK, top, kmax, logits, vocab);
    return plan.captureIds.length > 0 ? { runs: result, captured } : { runs: result };
  }

  async dispose(): Promise<void> {
    if (!this.#sequences.dispose()) {
      return;
    }
    await this.#steps.idle();
    this.#native.dispose();
  }
}

const NO_TOP = new Int32Array(0);

/**
 * The top-k a run's rows get on the GPU: 1 for "argmax", k for `{ topK: k }` up to `limit`, else
 * 0 (the whole row comes back and engine-core reduces it, with its own errors for a bad k).
 */
function deviceTopK(reduce: SequenceRun["reduce"], limit: number): number {
  if (limit < 1) {
    return 0;
  }
  if (reduce === "argmax") {
    return 1;
  }
  if (reduce === undefined || reduce === "full") {
    return 0;
  }
  const k = reduce.topK;
  return Number.isInteger(k) && k >= 1 && k <= limit ? k : 0;
}

/**
 * Each run's result from a step whose reduced rows came back as top-k (`top`: per row, kmax
 * ids, then kmax values as f32 bits) and whose other rows came back whole in `logits`.
 */
function runsFromTop(
  runs: readonly SequenceRun[],
  wantLogits: Uint8Array,
  rowK: Int32Array,
  top: Int32Array,
  kmax: number,
  logits: Float32Array,
  vocab: number,
): RunLogits[] {
  const topValues = new Float32Array(top.buffer, top.byteOffset, top.length);
  const result: RunLogits[] = [];
  forEachRunRows(runs, wantLogits, (run, row, rows) => {
    const k = rows > 0 ? rowK[row]! : 0;
    if (k === 0) {
      result.push(
        reduceRows(
          run.sequence,
          rows,
          logits.subarray(row * vocab, (row + rows) * vocab),
          vocab,
          run.reduce,
        ),
      );
      return;
    }
    const ids = new Int32Array(rows * k);
    const values = new Float32Array(rows * k);
    const argmax = new Int32Array(rows);
    for (let r = 0; r < rows; r++) {
      const at = (row + r) * 2 * kmax;
      ids.set(top.subarray(at, at + k), r * k);
      values.set(topValues.subarray(at + kmax, at + kmax + k), r * k);
      argmax[r] = ids[r * k]!;
    }
    const empty = new Float32Array(0);
    result.push(
      run.reduce === "argmax"
        ? { sequence: run.sequence, rows, logits: empty, argmax }
        : { sequence: run.sequence, rows, logits: empty, argmax, top: { k, ids, logits: values } },
    );
  });
  return result;
}

/** The first op after ops[i] that reads ops[i]'s output, if any. */
function firstReader(ops: readonly GraphOp[], i: number): GraphOp | undefined {
  const out = ops[i]!.out;
  return ops.slice(i + 1).find((op) => {
    switch (op.kind) {
      case "embed":
        return false;
      case "attention":
        return op.q === out || op.k === out || op.v === out;
      case "add":
        return op.a === out || op.b === out;
      case "glu":
        return op.gate === out || op.up === out;
      default:
        return op.x === out;
    }
  });
}
