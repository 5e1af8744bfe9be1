/**
 * The native CPU backend: compiles engine-core's graph into the addon's execution plan (the GGUF
 * file is mapped read-only by the addon; no tensor bytes pass through JavaScript) and runs each
 * step as one async native call on the addon's thread pool.
 */
import { probeDevice, probeMemory } from "@bitnet-ts/device-probe";
import {
  type Backend,
  type BackendDescription,
  type Capacity,
  type CaptureRequest,
  type CompiledModel,
  type CompileOptions,
  EngineError,
  EngineErrorCode,
  type GraphOp,
  type ModelDescription,
  planNativeStep,
  type SequenceRun,
  SequenceTable,
  type StepOutput,
  StepQueue,
  splitLogits,
  stepChunks,
  type TopKRowsFunction,
} from "@bitnet-ts/engine-core";
import {
  type HeadQuantization,
  type NativeBinding,
  type NativeModel,
  NativeOpKind,
  type NativeOpSpec,
  type NativeTensorSpec,
} from "./binding";
import { loadBinding } from "./loader";

declare module "@bitnet-ts/engine-core" {
  interface BackendOptionsByName {
    cpu: CpuBackendOptions;
  }
}

export interface CpuBackendOptions {
  /** Worker threads (default: physical cores). */
  readonly threads?: number;
  /**
   * Force a kernel path: "scalar", "avx2", "avxvnni", "avx512vnni", "amx", "neon", "neon-dotprod",
   * "neon-i8mm" (default "auto"; env BITNET_KERNEL_PATH).
   */
  readonly kernelPath?: string;
  /**
   * Run the output head quantized: "q8_0" or "q6_k" requantize it at load (an F16 head of the
   * 2B-4T is 657 MB; Q8_0 349 MB, Q6_K 269 MB) and use that type's integer kernel with the
   * activations quantized to match (Q8_0, or Q8_K for Q6_K): faster decode, logits that differ
   * slightly from the file's numerics. A head already of that type is used as it is. Default:
   * the file's head (env BITNET_HEAD=q8_0|q6_k); a file's Q8_0 or Q6_K head always runs on these
   * integer kernels, as llama.cpp runs it.
   */
  readonly head?: HeadQuantization;
  /** @deprecated `head: "q8_0"`. */
  readonly headQ8_0?: boolean;
  /**
   * TQ1_0 weights: "repack" (default) decodes them to TQ2_0 at load, 2.06 bits per weight in
   * memory, which two cores stream faster than they can unpack base-3; "direct" reads the file's
   * 1.69 bits per weight as they are (less memory, and fewer bytes per decoded token where the
   * cores outrun memory: many threads on one memory channel). Env BITNET_TQ1=direct.
   */
  readonly tq1?: "repack" | "direct";
  /**
   * true (default): the GGUF file is mapped read-only and tensors are used in place (fast load,
   * shared page cache, resident memory ≈ weights), at a 2 MiB-aligned address so that the kernel
   * can use 2 MiB page-table entries where the page cache holds the file in 2 MiB folios
   * (`info().hugeMappedBytes` says how much; a 2 MiB range the page cache holds only in part is
   * dropped and read again first, so that it comes back as one folio: `info().rereadBytes`).
   * false: tensors are read into anonymous transparent-huge-page memory (llama.cpp's
   * --no-mmap): as fast whatever the page cache holds, at the cost of a private copy (env
   * BITNET_NO_MMAP=1).
   */
  readonly mmap?: boolean;
  /** Most tokens per native step (default 256); longer steps are split. */
  readonly maxBatch?: number;
  /** Explicit path to the compiled addon. */
  readonly addonPath?: string;
  /**
   * Host memory the KV caches may take, in bytes (default: 90% of the memory available when the
   * model is compiled). The server admits requests against it.
   */
  readonly kvBudgetBytes?: number;
}

export class CpuBackend implements Backend {
  readonly name = "cpu";
  readonly needsTensorData = false;
  /** Every kernel reduces in a fixed order whatever the batch: batched equals one by one. */
  readonly batchInvariance = "bit-exact";
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

  /** The kernel path a model compiled now would run ("auto" resolved: the best this CPU has). */
  kernelPath(): string {
    const forced = this.#options.kernelPath ?? process.env["BITNET_KERNEL_PATH"] ?? "auto";
    return forced === "auto" ? this.binding.availablePaths().at(-1)! : forced;
  }

  describe(): BackendDescription {
    const cpu = probeDevice().cpu;
    return {
      device: `${cpu.model} (${this.kernelPath()})`,
      details: {
        kernelPath: this.kernelPath(),
        availablePaths: this.binding.availablePaths().join(", "),
        threads: this.#options.threads ?? cpu.physicalCores,
        mmap: this.#options.mmap ?? process.env["BITNET_NO_MMAP"] !== "1",
        decodePrefetch: describePrefetch(this.binding.decodePrefetch()),
        decodeFusion:
          process.env["BITNET_DECODE_FUSE"] === "0"
            ? "off (BITNET_DECODE_FUSE=0)"
            : "norms, a relu² GLU, residual adds and RoPE inside their consumers",
      },
    };
  }

  async compile(model: ModelDescription, options: CompileOptions = {}): Promise<CpuModel> {
    if (model.path === undefined) {
      throw new EngineError(
        EngineErrorCode.BAD_OPTION,
        "could not compile for the CPU backend - the model has no file path to map.",
      );
    }
    const hp = model.hparams;
    const threads = this.#options.threads ?? probeDevice().cpu.physicalCores;
    if (!Number.isInteger(threads) || threads < 1) {
      throw new EngineError(
        EngineErrorCode.BAD_OPTION,
        `could not compile for the CPU backend - threads must be a positive integer, got ${threads}.`,
      );
    }
    const head = headQuantization(this.#options);
    checkDecodePrefetchEnv();
    const tq1 = this.#options.tq1 ?? process.env["BITNET_TQ1"] ?? "repack";
    if (tq1 !== "repack" && tq1 !== "direct") {
      throw new EngineError(
        EngineErrorCode.BAD_OPTION,
        `could not compile for the CPU backend - tq1 must be repack or direct, got "${tq1}".`,
      );
    }
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
    const onProgress = options.onProgress;
    try {
      native = await this.binding.loadModel(
        {
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
          head,
          tq1,
          mmap: this.#options.mmap ?? process.env["BITNET_NO_MMAP"] !== "1",
          tensors,
          ops,
          bufferWidths: bufferNames.map((n) => model.graph.buffers[n]!),
        },
        onProgress === undefined
          ? undefined
          : (phase, done, total) => onProgress({ phase, done, total }),
      );
    } catch (error) {
      throw new EngineError(
        EngineErrorCode.BACKEND_UNAVAILABLE,
        `could not compile the model for the CPU backend - ${(error as Error).message}.`,
        {
          cause: error,
        },
      );
    }
    const kvBudget = this.#options.kvBudgetBytes ?? Math.floor(0.9 * probeMemory().availableBytes);
    return new CpuModel(
      model,
      native,
      contextLength,
      maxBatch,
      bufferId,
      kvBudget,
      nativeTopK(this.binding),
    );
  }
}

interface SequenceState {
  length: number;
  /** Where this sequence's transient logits rows are handed out (see SequenceRun.transient). */
  logits?: Float32Array;
}

/**
 * Steps with at most this many logits rows (decode, draft verification) write them into a
 * buffer kept across steps when no run needs an array of its own; larger steps (a perplexity
 * window's "all") allocate, so no buffer stays at their size.
 */
const REUSED_LOGITS_ROWS = 16;

/**
 * engine-core's topKRows (the same ranking, the same output) in the addon: a greedy or top-k
 * reduction of a 128k-entry row takes ~40 µs there against ~0.3 ms in JavaScript.
 */
function nativeTopK(binding: NativeBinding): TopKRowsFunction {
  return (logits, rows, vocab, k) => {
    const ids = new Int32Array(rows * k);
    const values = new Float32Array(rows * k);
    binding.topKRows(logits, rows, vocab, k, ids, values);
    return { k, ids, logits: values };
  };
}

export class CpuModel implements CompiledModel {
  readonly description: ModelDescription;
  readonly backendName = "cpu";
  readonly contextLength: number;
  readonly native: NativeModel;
  readonly #maxBatch: number;
  readonly #buffers: Map<string, number>;
  readonly #kvBudget: number;
  /** Reductions ("argmax", top-k) in the addon (nativeTopK); engine-core's when undefined. */
  readonly #topK: TopKRowsFunction | undefined;
  readonly #sequences = new SequenceTable<SequenceState>();
  /** Steps run one at a time, in call order; each caller gets its own outcome. */
  readonly #steps = new StepQueue();
  /** Native sequence mutations wait for the step in flight (the step reads the sequences). */
  readonly #pending: (() => void)[] = [];
  #nativeBusy = false;

  constructor(
    description: ModelDescription,
    native: NativeModel,
    contextLength: number,
    maxBatch: number,
    buffers: Map<string, number>,
    kvBudgetBytes: number,
    topK?: TopKRowsFunction,
  ) {
    this.description = description;
    this.#topK = topK;
    this.native = native;
    this.contextLength = contextLength;
    this.#maxBatch = maxBatch;
    this.#buffers = buffers;
    this.#kvBudget = kvBudgetBytes;
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

  capacity(): Capacity {
    this.#sequences.assertAlive();
    const info = this.native.info();
    return {
      kvBytesPerToken: info.kvBytesPerToken,
      kvBudgetBytes: this.#kvBudget,
      kvUsedBytes: info.kvAllocatedBytes,
      // Memory only: a whole device probe runs nvidia-smi and nvcc (tens of ms), and admission
      // reads the capacity at every decision.
      freeBytes: probeMemory().availableBytes,
      maxSequences: undefined,
      liveSequences: this.#sequences.size,
      contextLength: this.contextLength,
    };
  }

  #native(action: () => void): void {
    if (this.#nativeBusy) {
      this.#pending.push(action);
    } else {
      action();
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

  step(runs: readonly SequenceRun[], capture?: CaptureRequest): Promise<StepOutput> {
    return this.#steps.run(() => this.#step(runs, capture, undefined));
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
    // Reductions and transient runs never hand the step's buffer out, so it can be reused.
    const reuse =
      flat.rows <= REUSED_LOGITS_ROWS &&
      runs.every((run) => run.transient === true || (run.reduce ?? "full") !== "full");
    // One transient run that keeps its full rows (a generation loop's decode step): the native
    // step writes them straight into the sequence's own array, saving a copy (0.5 MB a token).
    const own =
      reuse && runs.length === 1 && flat.rows > 0 && (runs[0]!.reduce ?? "full") === "full"
        ? this.#sequenceBuffer(runs[0]!.sequence, flat.rows * vocab)
        : undefined;
    const logits =
      own ?? (reuse ? this.#stepLogits(flat.rows * vocab) : new Float32Array(flat.rows * vocab));
    this.#nativeBusy = true;
    try {
      for (const chunk of stepChunks(flat, this.#maxBatch)) {
        await this.native.step(
          flat.tokens.subarray(chunk.start, chunk.end),
          flat.sequences.subarray(chunk.start, chunk.end),
          flat.positions.subarray(chunk.start, chunk.end),
          chunk.want,
          logits.subarray(chunk.row * vocab, (chunk.row + chunk.rows) * vocab),
          plan.captureIds,
          plan.captureOut,
          plan.injectIds,
          plan.injectData,
        );
      }
    } finally {
      this.#nativeBusy = false;
      for (const action of this.#pending.splice(0)) {
        action();
      }
    }
    for (const run of runs) {
      this.#sequences.get(run.sequence).length += run.tokens.length;
    }
    let result = splitLogits(runs, flat, logits, vocab, this.#topK);
    if (reuse && own === undefined) {
      // Full rows leave the step buffer for their sequence's own, valid until its next step.
      result = result.map((run) =>
        run.logits.length === 0
          ? run
          : { ...run, logits: this.#sequenceLogits(run.sequence, run.logits) },
      );
    }
    return plan.captureIds.length > 0 ? { runs: result, captured } : { runs: result };
  }

  #reusedLogits = new Float32Array(0);

  #stepLogits(length: number): Float32Array {
    if (this.#reusedLogits.length < length) {
      this.#reusedLogits = new Float32Array(length);
    }
    return this.#reusedLogits.subarray(0, length);
  }

  #sequenceLogits(sequence: number, rows: Float32Array): Float32Array {
    const out = this.#sequenceBuffer(sequence, rows.length);
    out.set(rows);
    return out;
  }

  #sequenceBuffer(sequence: number, length: number): Float32Array {
    const state = this.#sequences.get(sequence);
    if (state.logits === undefined || state.logits.length < length) {
      state.logits = new Float32Array(length);
    }
    return state.logits.subarray(0, length);
  }

  async dispose(): Promise<void> {
    if (!this.#sequences.dispose()) {
      return;
    }
    await this.#steps.idle();
    this.native.dispose();
  }
}

const HEAD_QUANTIZATIONS: readonly HeadQuantization[] = ["q8_0", "q6_k"];

/** The output-head type the options (or env BITNET_HEAD, BITNET_HEAD_Q8_0=1) ask for; "" for none. */
function headQuantization(options: CpuBackendOptions): "" | HeadQuantization {
  const asked =
    options.head ??
    (options.headQ8_0 === true ? "q8_0" : undefined) ??
    process.env["BITNET_HEAD"] ??
    (process.env["BITNET_HEAD_Q8_0"] === "1" ? "q8_0" : "");
  if (asked !== "" && !(HEAD_QUANTIZATIONS as readonly string[]).includes(asked)) {
    throw new EngineError(
      EngineErrorCode.BAD_OPTION,
      `could not compile for the CPU backend - head must be ${HEAD_QUANTIZATIONS.join(" or ")}, got "${asked}".`,
    );
  }
  return asked as "" | HeadQuantization;
}

/** The variables that set the one-token loops' prefetch distances (read by the addon). */
export const DECODE_PREFETCH_VARIABLES = [
  "BITNET_DECODE_PREFETCH_BYTES",
  "BITNET_DECODE_PREFETCH_L2_BYTES",
  "BITNET_DECODE_PREFETCH_HEAD_BYTES",
] as const;

/**
 * Rejects a prefetch distance (DECODE_PREFETCH_VARIABLES), BITNET_DECODE_VECTOR_BITS, BITNET_HEAD_VECTOR_BITS,
 * BITNET_DECODE_PREFETCH_NTA, BITNET_DECODE_FUSE or BITNET_ATTENTION_SPLIT the addon would ignore
 * or misread (it reads the prefetch variables once per process and the last two per model, and
 * falls back to its defaults on a value it cannot use).
 */
function checkDecodePrefetchEnv(): void {
  const choices: [name: string, allowed: readonly string[], rule: string][] = [
    ["BITNET_DECODE_VECTOR_BITS", ["256", "512"], "256 or 512"],
    ["BITNET_HEAD_VECTOR_BITS", ["256", "512"], "256 or 512"],
    ["BITNET_DECODE_PREFETCH_NTA", ["0", "1"], "0 or 1"],
    ["BITNET_DECODE_FUSE", ["0", "1"], "0 or 1"],
  ];
  for (const [name, allowed, rule] of choices) {
    const value = process.env[name];
    if (value !== undefined && value !== "" && !allowed.includes(value)) {
      throw new EngineError(
        EngineErrorCode.BAD_OPTION,
        `could not compile for the CPU backend - ${name} must be ${rule}, got "${value}".`,
      );
    }
  }
  // One-token steps split their attention across threads by its work from this many positions.
  const split = process.env["BITNET_ATTENTION_SPLIT"];
  if (split !== undefined && split !== "" && !/^\d{1,9}$/.test(split)) {
    throw new EngineError(
      EngineErrorCode.BAD_OPTION,
      `could not compile for the CPU backend - BITNET_ATTENTION_SPLIT must be a number of positions (0: never), got "${split}".`,
    );
  }
  for (const name of DECODE_PREFETCH_VARIABLES) {
    const raw = process.env[name];
    if (raw === undefined || raw === "") {
      continue;
    }
    const bytes = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
    if (!(bytes <= 65536 && bytes % 64 === 0)) {
      throw new EngineError(
        EngineErrorCode.BAD_OPTION,
        `could not compile for the CPU backend - ${name} must be a multiple of 64 from 0 to 65536, got "${raw}".`,
      );
    }
  }
}

/** For describe(): the distances the addon uses, and the defaults where the environment changed them. */
function describePrefetch(p: ReturnType<NativeBinding["decodePrefetch"]>): string {
  const other = p.other === 0 ? "off" : `${p.other} B`;
  const l2 =
    p.l2 === 0 && p.l2Avx2 === 0
      ? ""
      : ` (and into L2: ${p.l2} B on the VNNI paths, ${p.l2Avx2} B on avx2)`;
  const head = p.head === 0 ? "off" : `${p.head} B${p.nonTemporal ? "" : " into L2"}`;
  const hint = p.nonTemporal ? " (non-temporal)" : "";
  const chosen = `${p.i2s} B ahead in I2_S rows${l2}, TQ2_0 rows ${other}, F16 head ${head}${hint}; avx512vnni I2_S decode in ${p.vectorBits}-bit vectors, F16 head in ${p.headBits}-bit`;
  const changed = [
    p.i2s === p.defaultI2s && p.other === p.defaultOther
      ? ""
      : `BITNET_DECODE_PREFETCH_BYTES; default ${p.defaultI2s} / ${p.defaultOther}`,
    p.l2 === p.defaultL2 && p.l2Avx2 === p.defaultL2Avx2
      ? ""
      : `BITNET_DECODE_PREFETCH_L2_BYTES; default ${p.defaultL2} / ${p.defaultL2Avx2}`,
    p.head === p.defaultHead ? "" : `BITNET_DECODE_PREFETCH_HEAD_BYTES; default ${p.defaultHead}`,
    p.vectorBits === p.defaultVectorBits
      ? ""
      : `BITNET_DECODE_VECTOR_BITS; default ${p.defaultVectorBits}`,
    p.headBits === p.defaultHeadBits ? "" : `BITNET_HEAD_VECTOR_BITS; default ${p.defaultHeadBits}`,
    p.nonTemporal === p.defaultNonTemporal
      ? ""
      : `BITNET_DECODE_PREFETCH_NTA; default ${p.defaultNonTemporal ? 1 : 0}`,
  ].filter((s) => s !== "");
  return changed.length === 0 ? chosen : `${chosen} (${changed.join("; ")})`;
}

/** The kernel path "auto" resolves to on this CPU, as the addon reports it (best last). */
export function expectedKernelPath(): string {
  return loadBinding().availablePaths().at(-1)!;
}
