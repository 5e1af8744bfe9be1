/**
 * The native CPU backend: compiles engine-core's graph into the addon's execution plan (the GGUF
 * file is mapped read-only by the addon; no tensor bytes pass through JavaScript) and runs each
 * step as one async native call on the addon's thread pool.
 */
import { bestCpuPath, probeDevice } from "@bitnet-ts/device-probe";
import {
  type Backend,
  type CaptureRequest,
  type CompiledModel,
  type CompileOptions,
  EngineError,
  EngineErrorCode,
  type GraphOp,
  type ModelDescription,
  type RunLogits,
  type SequenceRun,
  SequenceTable,
  type StepResult,
  validateStep,
} from "@bitnet-ts/engine-core";
import {
  type NativeBinding,
  type NativeModel,
  NativeOpKind,
  type NativeOpSpec,
  type NativeTensorSpec,
} from "./binding";
import { loadBinding } from "./loader";

export interface CpuBackendOptions {
  /** Worker threads (default: physical cores). */
  readonly threads?: number;
  /** Force a kernel path: "scalar", "avx2", "avx512vnni", "neon" (default "auto"; env BITNET_KERNEL_PATH). */
  readonly kernelPath?: string;
  /** Requantize an F16 output head to Q8_0 at load: faster decode, slightly different logits (default false). */
  readonly headQ8_0?: boolean;
  /**
   * true (default): the GGUF file is mapped read-only and tensors are used in place (fast load,
   * shared page cache, resident memory ≈ weights), at a 2 MiB-aligned address so that the kernel
   * can use 2 MiB page-table entries where the page cache holds the file in 2 MiB folios
   * (`info().hugeMappedBytes` says how much). false: tensors are read into anonymous
   * transparent-huge-page memory (llama.cpp's --no-mmap): as fast whatever the page cache holds,
   * at the cost of a private copy (env BITNET_NO_MMAP=1).
   */
  readonly mmap?: boolean;
  /** Most tokens per native step (default 256); longer steps are split. */
  readonly maxBatch?: number;
  /** Explicit path to the compiled addon. */
  readonly addonPath?: string;
}

export class CpuBackend implements Backend {
  readonly name = "cpu";
  readonly needsTensorData = false;
  readonly binding: NativeBinding;
  readonly #options: CpuBackendOptions;

  constructor(options: CpuBackendOptions = {}) {
    this.binding = loadBinding(options.addonPath);
    this.#options = options;
  }

  /** Kernel paths this CPU can run (best last). */
  availablePaths(): string[] {
    return this.binding.availablePaths();
  }

  async compile(model: ModelDescription, options: CompileOptions = {}): Promise<CpuModel> {
    if (model.path === undefined) {
      throw new EngineError(
        EngineErrorCode.BAD_OPTION,
        "could not compile for the CPU backend - the model has no file path to map.",
      );
    }
    const hp = model.hparams;
    const threads = options.threads ?? this.#options.threads ?? probeDevice().cpu.physicalCores;
    const contextLength = options.contextLength ?? hp.contextLength;
    const kernelPath = this.#options.kernelPath ?? process.env["BITNET_KERNEL_PATH"] ?? "auto";
    if (kernelPath !== "auto" && !this.binding.availablePaths().includes(kernelPath)) {
      throw new EngineError(
        EngineErrorCode.BACKEND_UNAVAILABLE,
        `could not use kernel path "${kernelPath}" - this CPU supports ${this.binding.availablePaths().join(", ")}.`,
      );
    }
    // --- tensors and buffers by index ---
    const tensors: NativeTensorSpec[] = [];
    const tensorIndex = new Map<string, number>();
    const tensor = (name: string | undefined): number => {
      if (name === undefined) {
        return -1;
      }
      let i = tensorIndex.get(name);
      if (i === undefined) {
        const t = model.tensors.get(name);
        if (t === undefined) {
          throw new EngineError(
            EngineErrorCode.MISSING_TENSOR,
            `could not compile - tensor "${name}" is not bound.`,
          );
        }
        i = tensors.length;
        tensors.push({
          name,
          type: t.info.type.id,
          ne0: t.info.shape[0] ?? 1,
          ne1: t.info.elementCount / (t.info.shape[0] ?? 1),
          offset: t.info.fileOffset,
          bytes: t.info.byteSize,
        });
        tensorIndex.set(name, i);
      }
      return i;
    };
    const bufferNames = Object.keys(model.graph.buffers);
    const bufferId = new Map(bufferNames.map((n, i) => [n, i]));
    const b = (name: string): number => bufferId.get(name)!;
    const ops: NativeOpSpec[] = model.graph.ops.map((op: GraphOp) => {
      const base = {
        kind: NativeOpKind[op.kind],
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
          return { ...base, weight: tensor(op.table) };
        case "rms_norm":
          return { ...base, in0: b(op.x), weight: tensor(op.weight) };
        case "linear":
          return { ...base, in0: b(op.x), weight: tensor(op.weight), scale: tensor(op.scale) };
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
          return { ...base, in0: b(op.x), weight: tensor(op.weight) };
        default:
          throw new EngineError(
            EngineErrorCode.BAD_OPTION,
            `could not compile op "${(op as GraphOp).kind}" - the CPU backend does not know it.`,
          );
      }
    });
    const maxBatch = this.#options.maxBatch ?? 256;
    let native: NativeModel;
    try {
      native = new this.binding.NativeModel({
        path: model.path,
        nEmbd: hp.nEmbd,
        nLayer: hp.nLayer,
        nFf: hp.nFf,
        nHead: hp.nHead,
        nHeadKv: hp.nHeadKv,
        headDim: hp.headDim,
        nRot: hp.nRot,
        vocabSize: hp.vocabSize,
        contextLength,
        ropeFreqBase: hp.ropeFreqBase,
        rmsEps: hp.rmsEps,
        threads,
        maxBatch,
        kernelPath,
        headQ8_0: this.#options.headQ8_0 ?? process.env["BITNET_HEAD_Q8_0"] === "1",
        mmap: this.#options.mmap ?? process.env["BITNET_NO_MMAP"] !== "1",
        tensors,
        ops,
        bufferWidths: bufferNames.map((n) => model.graph.buffers[n]!),
      });
    } catch (error) {
      throw new EngineError(
        EngineErrorCode.BACKEND_UNAVAILABLE,
        `could not compile the model for the CPU backend - ${(error as Error).message}.`,
        {
          cause: error,
        },
      );
    }
    return new CpuModel(model, native, contextLength, maxBatch, bufferId);
  }
}

interface SequenceState {
  length: number;
}

export class CpuModel implements CompiledModel {
  readonly description: ModelDescription;
  readonly backendName = "cpu";
  readonly contextLength: number;
  readonly native: NativeModel;
  readonly #maxBatch: number;
  readonly #buffers: Map<string, number>;
  readonly #sequences = new SequenceTable<SequenceState>();
  /** Native sequence mutations wait for the step in flight (the step reads the sequences). */
  readonly #pending: (() => void)[] = [];
  #inflight: Promise<unknown> | undefined;

  constructor(
    description: ModelDescription,
    native: NativeModel,
    contextLength: number,
    maxBatch: number,
    buffers: Map<string, number>,
  ) {
    this.description = description;
    this.native = native;
    this.contextLength = contextLength;
    this.#maxBatch = maxBatch;
    this.#buffers = buffers;
  }

  get sequenceCount(): number {
    return this.#sequences.size;
  }

  /** The kernel path, threads and memory the native model uses. */
  info(): ReturnType<NativeModel["info"]> {
    return this.native.info();
  }

  kernelCounts(): ReadonlyMap<string, number> {
    return new Map(Object.entries(this.native.kernelCounts()));
  }

  #native(action: () => void): void {
    if (this.#inflight === undefined) {
      action();
    } else {
      this.#pending.push(action);
    }
  }

  createSequence(): number {
    const id = this.#sequences.add({ length: 0 });
    this.#native(() => this.native.createSequence(id));
    return id;
  }

  forkSequence(sequence: number): number {
    const src = this.#sequences.get(sequence);
    const id = this.#sequences.add({ length: src.length });
    this.#native(() => this.native.forkSequence(sequence, id));
    return id;
  }

  truncateSequence(sequence: number, length: number): void {
    this.#sequences.truncate(sequence, length);
    this.#native(() => this.native.truncateSequence(sequence, length));
  }

  freeSequence(sequence: number): void {
    this.#sequences.delete(sequence);
    this.#native(() => this.native.freeSequence(sequence));
  }

  sequenceLength(sequence: number): number {
    return this.#sequences.get(sequence).length;
  }

  step(
    runs: readonly SequenceRun[],
    capture?: CaptureRequest,
  ): Promise<StepResult & { captured?: ReadonlyMap<string, Float32Array> }> {
    return this.#step(runs, capture, undefined);
  }

  /**
   * A step in op-by-op oracle mode: right before each op runs, the buffers named in `inputs`
   * that it reads are overwritten with the given values (T × width floats, T = the step's
   * tokens), so every op can be checked in isolation against another backend's intermediates
   * captured on the same step. Must fit one native step.
   */
  stepWithInputs(
    runs: readonly SequenceRun[],
    inputs: ReadonlyMap<string, Float32Array>,
    capture: CaptureRequest,
  ): Promise<StepResult & { captured?: ReadonlyMap<string, Float32Array> }> {
    return this.#step(runs, capture, inputs);
  }

  async #step(
    runs: readonly SequenceRun[],
    capture: CaptureRequest | undefined,
    inputs: ReadonlyMap<string, Float32Array> | undefined,
  ): Promise<StepResult & { captured?: ReadonlyMap<string, Float32Array> }> {
    this.#sequences.assertAlive();
    while (this.#inflight !== undefined) {
      await this.#inflight; // one native step at a time
    }
    const hp = this.description.hparams;
    const total = validateStep(
      runs,
      (id) => this.#sequences.get(id).length,
      hp.vocabSize,
      this.contextLength,
    );
    const captureIds = (capture?.buffers ?? []).map((name) => {
      const id = this.#buffers.get(name);
      if (id === undefined) {
        throw new EngineError(
          EngineErrorCode.BAD_OPTION,
          `could not capture buffer "${name}" - the graph has no such buffer.`,
        );
      }
      return id;
    });
    if (captureIds.length > 0 && total > this.#maxBatch) {
      throw new EngineError(
        EngineErrorCode.BAD_OPTION,
        `could not capture buffers - the step has ${total} tokens, more than one native step (${this.#maxBatch}).`,
      );
    }
    const injectIds: number[] = [];
    const injectData: Float32Array[] = [];
    for (const [name, values] of inputs ?? []) {
      const id = this.#buffers.get(name);
      const width = this.description.graph.buffers[name];
      if (id === undefined || width === undefined) {
        throw new EngineError(
          EngineErrorCode.BAD_OPTION,
          `could not inject buffer "${name}" - the graph has no such buffer.`,
        );
      }
      if (values.length !== total * width) {
        throw new EngineError(
          EngineErrorCode.BAD_OPTION,
          `could not inject buffer "${name}" - it needs ${total * width} values (${total} tokens × ${width}), got ${values.length}.`,
        );
      }
      injectIds.push(id);
      injectData.push(values);
    }
    if (injectIds.length > 0 && total > this.#maxBatch) {
      throw new EngineError(
        EngineErrorCode.BAD_OPTION,
        `could not inject buffers - the step has ${total} tokens, more than one native step (${this.#maxBatch}).`,
      );
    }
    // Flatten: token, sequence, position, and whether its logits are wanted.
    const tokens = new Int32Array(total);
    const seqs = new Int32Array(total);
    const positions = new Int32Array(total);
    const want = new Uint8Array(total);
    let at = 0;
    for (const run of runs) {
      const s = this.#sequences.get(run.sequence);
      const mode = run.logits ?? "last";
      run.tokens.forEach((token, i) => {
        tokens[at] = token;
        seqs[at] = run.sequence;
        positions[at] = s.length + i;
        want[at] = mode === "all" || (mode === "last" && i === run.tokens.length - 1) ? 1 : 0;
        at++;
      });
    }
    let rowsTotal = 0;
    for (const w of want) {
      rowsTotal += w;
    }
    const vocab = hp.vocabSize;
    const logits = new Float32Array(rowsTotal * vocab);
    const captured = new Map<string, Float32Array>();
    const captureOut = captureIds.map((_id, i) => {
      const out = new Float32Array(total * this.description.graph.buffers[capture!.buffers[i]!]!);
      captured.set(capture!.buffers[i]!, out);
      return out;
    });
    const work = (async () => {
      let row = 0;
      for (let start = 0; start < total; start += this.#maxBatch) {
        const end = Math.min(total, start + this.#maxBatch);
        const chunkWant = want.subarray(start, end);
        let rows = 0;
        for (const w of chunkWant) {
          rows += w;
        }
        await this.native.step(
          tokens.subarray(start, end),
          seqs.subarray(start, end),
          positions.subarray(start, end),
          chunkWant,
          logits.subarray(row * vocab, (row + rows) * vocab),
          Int32Array.from(captureIds),
          captureOut,
          Int32Array.from(injectIds),
          injectData,
        );
        row += rows;
      }
    })();
    this.#inflight = work;
    try {
      await work;
    } finally {
      this.#inflight = undefined;
      for (const action of this.#pending.splice(0)) {
        action();
      }
    }
    for (const run of runs) {
      this.#sequences.get(run.sequence).length += run.tokens.length;
    }
    const result: RunLogits[] = [];
    let row = 0;
    let index = 0;
    for (const run of runs) {
      let rows = 0;
      for (let i = 0; i < run.tokens.length; i++) {
        rows += want[index + i]!;
      }
      result.push({
        sequence: run.sequence,
        rows,
        logits: logits.subarray(row * vocab, (row + rows) * vocab),
      });
      row += rows;
      index += run.tokens.length;
    }
    return captureIds.length > 0 ? { runs: result, captured } : { runs: result };
  }

  async dispose(): Promise<void> {
    if (!this.#sequences.dispose()) {
      return;
    }
    await this.#inflight;
    this.native.dispose();
  }
}

/**
 * The SIMD path "auto" resolves to here, from device-probe (the addon re-checks with cpuid).
 * NEON kernels are not written yet, so ARM machines run the scalar path.
 */
export function expectedKernelPath(): "avx512vnni" | "avx2" | "scalar" {
  const best = bestCpuPath(probeDevice().cpu);
  return best === "avx512vnni" || best === "avx2" ? best : "scalar";
}
