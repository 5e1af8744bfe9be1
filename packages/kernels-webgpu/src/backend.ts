/**
 * The WebGPU backend: engine-core's graph compiled into WGSL dispatches over GPU buffers. Weights
 * are uploaded once (repacked, see weights.ts); each forward step records the whole graph into
 * one command buffer, submits it once and reads back only what was asked of the logits (full
 * rows, or their argmax / top-k reduced on the GPU).
 */
import {
  type Backend,
  type BackendDescription,
  type Capacity,
  type CaptureRequest,
  type CompiledModel,
  type CompileOptions,
  checkStepBuffers,
  EngineError,
  EngineErrorCode,
  type FlatStep,
  flattenRuns,
  type GraphOp,
  type LogitsReduction,
  type ModelDescription,
  type RunLogits,
  reduceRows,
  type SequenceRun,
  SequenceTable,
  type StepOutput,
  StepQueue,
  validateStep,
} from "@bitnet-ts/engine-core";
import { decodeF16, decodeF32 } from "@bitnet-ts/quantization";
import { type GpuHandle, type RequestGpuOptions, requestGpu } from "./adapter";
import { KvPages } from "./kv";
import {
  type FloatWeights,
  floatWeights,
  TERNARY_TYPES,
  type TernaryWeights,
  ternaryWeights,
} from "./weights";
import {
  attentionShader,
  elementwiseShader,
  embedShader,
  floatMatmulShader,
  gatherRowsShader,
  KV_PAGE,
  kvStoreShader,
  type QuantMode,
  type QuantTarget,
  quantizeShader,
  rmsNormShader,
  ropeShader,
  ternaryLinearShader,
  topKShader,
} from "./wgsl";

declare module "@bitnet-ts/engine-core" {
  interface BackendOptionsByName {
    webgpu: WebGpuBackendOptions;
  }
}

/**
 * Options of the WebGPU backend (a type alias, not an interface: engine-core's BackendOptions
 * holds each backend's options as a plain record).
 */
export type WebGpuBackendOptions = RequestGpuOptions & {
  /** Most tokens per submitted step (default 128, lowered to what the adapter's limits allow). */
  readonly maxBatch?: number;
  /**
   * GPU memory the KV caches may take, in bytes (default: room for 4 sequences of the full
   * context, within the adapter's buffer limits).
   */
  readonly kvBudgetBytes?: number;
  /**
   * Reduce with subgroup operations (default: when the adapter has the "subgroups" feature);
   * false runs the workgroup-memory reductions every adapter has.
   */
  readonly subgroups?: boolean;
};

/** Largest k reduced on the GPU; larger top-k requests are reduced on the host from full rows. */
export const GPU_TOP_K_MAX = 64;

export class WebGpuBackend implements Backend {
  readonly name = "webgpu";
  /**
   * Each tensor is read once (`BoundTensor.read()`: from memory, the file, or any byte source such
   * as a browser `File` or an HTTP URL) and uploaded; the whole file is never needed in memory.
   */
  readonly needsTensorData = false;
  /**
   * The same kernels run whatever the batch, each output summed in a fixed order, so batched and
   * one-by-one steps agree; the tolerance covers GPU math that WGSL does not pin to the last bit
   * (division, exp, sqrt, contracted multiply-adds may differ between dispatch shapes on some
   * drivers).
   */
  readonly batchInvariance = { tolerance: 1e-4 } as const;
  readonly gpu: GpuHandle;
  readonly #options: WebGpuBackendOptions;

  private constructor(gpu: GpuHandle, options: WebGpuBackendOptions) {
    this.gpu = gpu;
    this.#options = options;
  }

  /** Requests the adapter and device; throws BACKEND_UNAVAILABLE with the reason when there is none. */
  static async create(options: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
    return new WebGpuBackend(await requestGpu(options), options);
  }

  describe(): BackendDescription {
    const r = this.gpu.report;
    return {
      device: `${r.description || r.device || r.vendor} (${r.backendType})`,
      details: {
        backendType: r.backendType,
        vendor: r.vendor,
        architecture: r.architecture,
        features: r.features.join(", "),
        maxStorageBufferBindingSize: r.limits["maxStorageBufferBindingSize"] ?? 0,
        maxBufferSize: r.limits["maxBufferSize"] ?? 0,
      },
    };
  }

  async compile(model: ModelDescription, options: CompileOptions = {}): Promise<WebGpuModel> {
    const compiled = new WebGpuModel(model, this.gpu, this.#options, options);
    await compiled.init(options);
    return compiled;
  }

  /** Destroys the device (every model compiled on it stops working). */
  release(): void {
    this.gpu.release();
  }
}

interface Physical {
  readonly buffer: GPUBuffer;
  readonly width: number;
}

/** One dispatch of the step: a pipeline, its bind group and its grid for T tokens / R rows. */
interface Dispatch {
  readonly kernel: string;
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  readonly grid: (tokens: number, rows: number) => [number, number, number];
}

/** The dispatches of one graph op, in order; `reads` are the graph buffers it reads. */
interface PlannedOp {
  readonly op: GraphOp;
  readonly reads: readonly string[];
  readonly dispatches: Dispatch[];
  /** Re-quantization to run after an injected input (op-by-op mode), for linears. */
  readonly requantize?: Dispatch;
}

const STORAGE = 0x80; // GPUBufferUsage.STORAGE, spelled out: the enums exist only once Dawn is loaded
const COPY_SRC = 0x04;
const COPY_DST = 0x08;
const UNIFORM = 0x40;
const MAP_READ = 0x01;

function ceilDiv(a: number, b: number): number {
  return Math.ceil(a / b);
}

function grid1(n: number): [number, number, number] {
  const x = Math.min(n, 65535);
  return [Math.max(1, x), Math.max(1, ceilDiv(n, Math.max(1, x))), 1];
}

export class WebGpuModel implements CompiledModel {
  readonly description: ModelDescription;
  readonly backendName = "webgpu";
  readonly contextLength: number;
  /** The device this model lives on. */
  readonly gpu: GpuHandle;
  readonly #device: GPUDevice;
  readonly #options: WebGpuBackendOptions;
  readonly #sequences = new SequenceTable<{ length: number }>();
  readonly #steps = new StepQueue();
  readonly #counts = new Map<string, number>();
  readonly #owned: GPUBuffer[] = [];
  readonly #pipelines = new Map<string, Promise<GPUComputePipeline>>();
  #bytes = 0;
  #maxBatch = 0;
  #kv!: KvPages;
  #kvBytesPerToken = 0;
  #kvBudget = 0;
  #maxPages = 0;
  #plan: PlannedOp[] = [];
  #phys = new Map<string, Physical>();
  #kCache: GPUBuffer[] = [];
  #vCache: GPUBuffer[] = [];
  #pageBytes = 0;
  #pageScratch!: GPUBuffer;
  // per-step inputs
  #stepUniform!: GPUBuffer;
  #tokens!: GPUBuffer;
  #positions!: GPUBuffer;
  #slots!: GPUBuffer;
  #seqRow!: GPUBuffer;
  #pageTable!: GPUBuffer;
  #rowIdx!: GPUBuffer;
  #kOf!: GPUBuffer;
  #logits!: GPUBuffer;
  #topIds!: GPUBuffer;
  #topVals!: GPUBuffer;
  #readback!: GPUBuffer;
  #topK!: Dispatch;
  #lost: string | undefined;
  #subgroups = false;

  constructor(
    description: ModelDescription,
    gpu: GpuHandle,
    options: WebGpuBackendOptions,
    compileOptions: CompileOptions,
  ) {
    this.description = description;
    this.gpu = gpu;
    this.#device = gpu.device;
    this.#options = options;
    this.contextLength = compileOptions.contextLength ?? description.hparams.contextLength;
    void this.#device.lost.then((info) => {
      this.#lost = `${info.reason}: ${info.message}`;
    });
  }

  get sequenceCount(): number {
    return this.#sequences.size;
  }

  /** GPU memory this model allocated (weights, scratch, KV pool), in bytes. */
  get allocatedBytes(): number {
    return this.#bytes;
  }

  /** Whether the kernels reduce with subgroup operations. */
  get subgroups(): boolean {
    return this.#subgroups;
  }

  /** Most tokens per submitted step. */
  get maxBatch(): number {
    return this.#maxBatch;
  }

  // ---------------------------------------------------------------- compile

  #limit(name: string): number {
    return (this.#device.limits as unknown as Record<string, number>)[name]!;
  }

  #buffer(label: string, size: number, usage: number): GPUBuffer {
    const padded = Math.max(16, Math.ceil(size / 16) * 16);
    if (padded > this.#limit("maxBufferSize")) {
      throw new EngineError(
        EngineErrorCode.OUT_OF_MEMORY,
        `could not allocate GPU buffer "${label}" of ${padded} bytes - the adapter's largest buffer is ${this.#limit("maxBufferSize")} bytes.`,
      );
    }
    const buffer = this.#device.createBuffer({ label, size: padded, usage });
    this.#owned.push(buffer);
    this.#bytes += padded;
    return buffer;
  }

  #storage(label: string, size: number, extra = 0): GPUBuffer {
    return this.#buffer(label, size, STORAGE | COPY_DST | COPY_SRC | extra);
  }

  #upload(label: string, data: ArrayBufferView): GPUBuffer {
    const buffer = this.#storage(label, data.byteLength);
    this.#write(buffer, 0, data);
    return buffer;
  }

  #write(buffer: GPUBuffer, offset: number, data: ArrayBufferView): void {
    // writeBuffer wants a size that is a multiple of 4.
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4 === 0) {
      this.#device.queue.writeBuffer(buffer, offset, bytes);
    } else {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      this.#device.queue.writeBuffer(buffer, offset, padded);
    }
  }

  #uniform(label: string, data: ArrayBufferView): GPUBuffer {
    const buffer = this.#buffer(label, 16, UNIFORM | COPY_DST);
    this.#write(buffer, 0, data);
    return buffer;
  }

  async #pipeline(code: string, label: string): Promise<GPUComputePipeline> {
    let p = this.#pipelines.get(code);
    if (p === undefined) {
      const module = this.#device.createShaderModule({ label, code });
      p = this.#device
        .createComputePipelineAsync({
          label,
          layout: "auto",
          compute: { module, entryPoint: "main" },
        })
        .catch(async (error: unknown) => {
          const info = await module.getCompilationInfo();
          const messages = info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
          throw new EngineError(
            EngineErrorCode.BACKEND_UNAVAILABLE,
            `could not compile WGSL kernel "${label}" - ${(error as Error).message}${messages.length > 0 ? `\n${messages.join("\n")}` : ""}`,
            { cause: error },
          );
        });
      this.#pipelines.set(code, p);
    }
    return p;
  }

  async #dispatch(
    kernel: string,
    code: string,
    buffers: readonly GPUBuffer[],
    grid: Dispatch["grid"],
  ): Promise<Dispatch> {
    const pipeline = await this.#pipeline(code, kernel);
    const bindGroup = this.#device.createBindGroup({
      label: kernel,
      layout: pipeline.getBindGroupLayout(0),
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    return { kernel, pipeline, bindGroup, grid };
  }

  async init(options: CompileOptions): Promise<void> {
    const device = this.#device;
    device.pushErrorScope("out-of-memory");
    device.pushErrorScope("validation");
    let failure: unknown;
    try {
      await this.#build(options);
    } catch (error) {
      failure = error;
    }
    const validation = await device.popErrorScope();
    const oom = await device.popErrorScope();
    if (failure !== undefined || validation !== null || oom !== null) {
      this.#destroyBuffers();
      if (failure !== undefined) {
        throw failure;
      }
      if (oom !== null) {
        throw new EngineError(
          EngineErrorCode.OUT_OF_MEMORY,
          `could not load the model on the GPU - out of GPU memory (${oom.message}).`,
        );
      }
      throw new EngineError(
        EngineErrorCode.BACKEND_UNAVAILABLE,
        `could not load the model on the GPU - ${validation!.message}`,
      );
    }
  }

  async #build(options: CompileOptions): Promise<void> {
    const model = this.description;
    const hp = model.hparams;
    const graph = model.graph;
    const progress = options.onProgress;
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
    const maxBinding = this.#limit("maxStorageBufferBindingSize");
    const hasSubgroups = this.#device.features.has("subgroups");
    if (this.#options.subgroups === true && !hasSubgroups) {
      throw new EngineError(
        EngineErrorCode.BAD_OPTION,
        "could not compile with subgroups - this adapter does not offer the subgroups feature.",
      );
    }
    const subgroups = this.#options.subgroups ?? hasSubgroups;
    this.#subgroups = subgroups;
    const vocab = hp.vocabSize;
    // Tokens per step: the logits of every token of a step must fit one binding.
    const maxBatch = Math.max(
      1,
      Math.min(this.#options.maxBatch ?? 128, Math.floor(maxBinding / (vocab * 4)), 65535),
    );
    this.#maxBatch = maxBatch;
    if (!Number.isInteger(this.contextLength) || this.contextLength < 1) {
      throw new EngineError(
        EngineErrorCode.BAD_OPTION,
        `could not compile - context length must be a positive integer, got ${this.contextLength}.`,
      );
    }

    // --- quantization targets: the widest quantized row of each mode ---
    let qCols = 0;
    let q8kBlocks = 1;
    for (const op of graph.ops) {
      if (op.kind === "linear" && TERNARY_TYPES.has(tensor(op.weight).info.type.name)) {
        const cols = tensor(op.weight).info.shape[0]!;
        qCols = Math.max(qCols, cols);
        q8kBlocks = Math.max(q8kBlocks, cols / 256);
      }
    }
    const qStride = Math.max(1, qCols / 4);
    const target = (mode: QuantMode): QuantTarget => ({ mode, qStride, nbMax: q8kBlocks });
    const qBuf = this.#storage("q", maxBatch * qStride * 4);
    const qScale = this.#storage("qscale", maxBatch * q8kBlocks * 4);
    const qSum = this.#storage("qsum", maxBatch * q8kBlocks * 4);
    // Activation rows gathered for float matmuls (f32 pairs at most: the f16 form is half).
    let floatCols = 0;
    for (const op of graph.ops) {
      if (
        op.kind === "output" ||
        (op.kind === "linear" && !TERNARY_TYPES.has(tensor(op.weight).info.type.name))
      ) {
        floatCols = Math.max(floatCols, graph.buffers[op.x]!);
      }
    }
    const gathered = this.#storage("gathered", maxBatch * Math.max(2, floatCols) * 4);

    // --- per-step inputs ---
    this.#stepUniform = this.#buffer("step", 16, UNIFORM | COPY_DST);
    this.#tokens = this.#storage("tokens", maxBatch * 4);
    this.#positions = this.#storage("positions", maxBatch * 4);
    this.#slots = this.#storage("slots", maxBatch * 4);
    this.#seqRow = this.#storage("seqRow", maxBatch * 4);
    this.#maxPages = ceilDiv(this.contextLength, KV_PAGE);
    this.#pageTable = this.#storage("pageTable", maxBatch * this.#maxPages * 4);
    this.#rowIdx = this.#storage("rowIdx", maxBatch * 4);
    this.#kOf = this.#storage("kOf", maxBatch * 4);
    this.#logits = this.#storage("logits", maxBatch * vocab * 4);
    this.#topIds = this.#storage("topIds", maxBatch * GPU_TOP_K_MAX * 4);
    this.#topVals = this.#storage("topVals", maxBatch * GPU_TOP_K_MAX * 4);
    this.#readback = this.#buffer(
      "readback",
      maxBatch * vocab * 4 + 2 * maxBatch * GPU_TOP_K_MAX * 4,
      MAP_READ | COPY_DST,
    );

    // --- RoPE table (ggml's rope cache: theta multiplied by theta_scale step by step) ---
    const nRot = hp.nRot;
    const half = nRot / 2;
    const cs = new Float32Array(this.contextLength * half * 2);
    const fr = Math.fround;
    const thetaScale = fr(hp.ropeFreqBase ** fr(-2 / nRot));
    for (let p = 0; p < this.contextLength; p++) {
      let theta = fr(p);
      for (let i = 0; i < half; i++) {
        cs[(p * half + i) * 2] = fr(Math.cos(theta));
        cs[(p * half + i) * 2 + 1] = fr(Math.sin(theta));
        theta = fr(theta * thetaScale);
      }
    }
    const ropeTable = this.#upload("rope", cs);

    // --- KV pool ---
    const kvWidth = hp.nHeadKv * hp.headDim;
    this.#kvBytesPerToken = hp.nLayer * 2 * kvWidth * 2;
    this.#pageBytes = KV_PAGE * kvWidth * 2;
    const maxPagesPerLayer = Math.floor(
      Math.min(maxBinding, this.#limit("maxBufferSize")) / this.#pageBytes,
    );
    const budget = this.#options.kvBudgetBytes ?? 4 * this.contextLength * this.#kvBytesPerToken;
    const pageCount = Math.min(
      maxPagesPerLayer,
      Math.floor(budget / (KV_PAGE * this.#kvBytesPerToken)),
    );
    if (pageCount < 1) {
      throw new EngineError(
        EngineErrorCode.OUT_OF_MEMORY,
        `could not compile - a KV budget of ${budget} bytes holds no page of ${KV_PAGE} tokens (${KV_PAGE * this.#kvBytesPerToken} bytes).`,
      );
    }
    this.#kv = new KvPages(pageCount);
    this.#pageScratch = this.#buffer("kv-page-copy", this.#pageBytes, COPY_SRC | COPY_DST);
    this.#kvBudget = pageCount * KV_PAGE * this.#kvBytesPerToken;
    for (let l = 0; l < hp.nLayer; l++) {
      this.#kCache.push(this.#storage(`k-${l}`, pageCount * this.#pageBytes));
      this.#vCache.push(this.#storage(`v-${l}`, pageCount * this.#pageBytes));
    }

    // --- physical buffers: graph buffers share them once their last reader has run ---
    const lastUse = new Map<string, number>();
    graph.ops.forEach((op, i) => {
      for (const name of opReads(op)) {
        lastUse.set(name, i);
      }
    });
    const free = new Map<number, Physical[]>();
    let physCount = 0;
    const allocate = (name: string) => {
      const width = graph.buffers[name]!;
      const pool = free.get(width) ?? [];
      const phys = pool.pop() ?? {
        buffer: this.#storage(`act-${physCount++}`, maxBatch * width * 4),
        width,
      };
      this.#phys.set(name, phys);
    };

    // --- float tables (head, embedding) in chunks that fit one storage binding; a tied
    // embedding and head share theirs ---
    const floatTables = new Map<
      string,
      { w: FloatWeights; chunks: { buffer: GPUBuffer; r0: number; rows: number }[] }
    >();
    const floatTable = async (name: string) => {
      let table = floatTables.get(name);
      if (table === undefined) {
        const w = floatWeights(tensor(name), await tensor(name).read());
        const rowsPerChunk = Math.max(
          1,
          Math.floor(Math.min(maxBinding, this.#limit("maxBufferSize")) / w.rowBytes),
        );
        const chunks: { buffer: GPUBuffer; r0: number; rows: number }[] = [];
        for (let r0 = 0; r0 < w.rows; r0 += rowsPerChunk) {
          const rows = Math.min(rowsPerChunk, w.rows - r0);
          chunks.push({
            buffer: this.#upload(
              `${name}[${r0}..${r0 + rows})`,
              w.bytes.subarray(r0 * w.rowBytes, (r0 + rows) * w.rowBytes),
            ),
            r0,
            rows,
          });
        }
        table = { w, chunks };
        floatTables.set(name, table);
      }
      return table;
    };
    // --- weights and dispatches, op by op ---
    const ternaryCache = new Map<string, { buffers: [GPUBuffer, GPUBuffer]; w: TernaryWeights }>();
    const normCache = new Map<string, GPUBuffer>();
    const linearCount = graph.ops.filter((op) => op.kind === "linear").length;
    let linearsDone = 0;
    const normWeights = async (name: string): Promise<GPUBuffer> => {
      let b = normCache.get(name);
      if (b === undefined) {
        const t = tensor(name);
        const values =
          t.info.type.name === "F16"
            ? decodeF16(await t.read(), new Float32Array(t.info.elementCount))
            : decodeF32(await t.read(), new Float32Array(t.info.elementCount));
        b = this.#upload(name, values);
        normCache.set(name, b);
      }
      return b;
    };
    const scaleOf = async (name: string | undefined): Promise<number> => {
      if (name === undefined) {
        return 1;
      }
      return decodeF32((await tensor(name).read()).subarray(0, 4), new Float32Array(1))[0]!;
    };
    const readers = (name: string) => graph.ops.filter((op) => opReads(op).includes(name));
    const modeOf = (op: GraphOp): QuantMode | undefined =>
      op.kind === "linear" && TERNARY_TYPES.has(tensor(op.weight).info.type.name)
        ? tensor(op.weight).info.type.name === "I2_S"
          ? "per-token-int8"
          : "q8_k"
        : undefined;
    // Which buffer the q scratch holds quantized, and how, as the plan runs op by op.
    let quantized: { name: string; mode: QuantMode } | undefined;
    const step = this.#stepUniform;
    const plan: PlannedOp[] = [];
    for (let i = 0; i < graph.ops.length; i++) {
      const op = graph.ops[i]!;
      const dispatches: Dispatch[] = [];
      let requantize: Dispatch | undefined;
      if (op.kind !== "output") {
        allocate(op.out);
      }
      const p = (name: string) => this.#phys.get(name)!.buffer;
      switch (op.kind) {
        case "embed": {
          const { w, chunks } = await floatTable(op.table);
          for (const [i, chunk] of chunks.entries()) {
            dispatches.push(
              await this.#dispatch(
                // One lookup per step, whatever the number of chunks it reads.
                i === 0 ? `webgpu.embed.${w.tag}` : "",
                embedShader(w.cols, w.layout),
                [
                  chunk.buffer,
                  this.#tokens,
                  p(op.out),
                  step,
                  this.#uniform(
                    `embed[${chunk.r0}].params`,
                    new Uint32Array([chunk.r0, chunk.rows, 0, 0]),
                  ),
                ],
                (t) => [ceilDiv(w.cols / 2, 64), t, 1],
              ),
            );
          }
          break;
        }
        case "rms_norm": {
          const n = graph.buffers[op.x]!;
          // Fuse the quantization of the first linear that reads this norm's output.
          const consumer = readers(op.out).find((r) => modeOf(r) !== undefined);
          const mode = consumer === undefined ? undefined : modeOf(consumer);
          const fused = mode === undefined || n % 256 !== 0 ? undefined : target(mode);
          const buffers = [p(op.x), await normWeights(op.weight), p(op.out), step];
          if (fused !== undefined) {
            buffers.push(qBuf, qScale, qSum);
          }
          dispatches.push(
            await this.#dispatch(
              `webgpu.rms_norm.f32${fused === undefined ? "" : `.fused_${fused.mode === "q8_k" ? "q8_k" : "i8"}`}`,
              rmsNormShader(n, hp.rmsEps, fused),
              buffers,
              (t) => [t, 1, 1],
            ),
          );
          quantized = fused === undefined ? quantized : { name: op.out, mode: fused.mode };
          break;
        }
        case "linear": {
          const t = tensor(op.weight);
          const outScale = await scaleOf(op.scale);
          const mode = modeOf(op);
          if (mode !== undefined) {
            let cached = ternaryCache.get(op.weight);
            if (cached === undefined) {
              const w = ternaryWeights(t, await t.read());
              cached = {
                w,
                buffers: [
                  this.#upload(op.weight, w.words),
                  this.#upload(`${op.weight}.scales`, w.scales),
                ],
              };
              ternaryCache.set(op.weight, cached);
            }
            const { w } = cached;
            const quantDispatch = await this.#dispatch(
              `webgpu.quantize.${mode === "q8_k" ? "q8_k" : "i8"}`,
              quantizeShader(w.cols, target(mode)),
              [p(op.x), step, qBuf, qScale, qSum],
              (tokens) => [tokens, 1, 1],
            );
            requantize = quantDispatch;
            if (quantized?.name !== op.x || quantized.mode !== mode) {
              dispatches.push(quantDispatch);
              quantized = { name: op.x, mode };
            }
            const shader = ternaryLinearShader(w.rows, w.cols, target(mode), w.codes, subgroups);
            dispatches.push(
              await this.#dispatch(
                `webgpu.linear.${w.tag}.dot4${subgroups && mode === "per-token-int8" ? ".subgroups" : ""}`,
                shader.code,
                [
                  cached.buffers[0],
                  cached.buffers[1],
                  qBuf,
                  qScale,
                  qSum,
                  p(op.out),
                  step,
                  this.#uniform(`${op.out}.params`, new Float32Array([outScale, 0, 0, 0])),
                ],
                (tokens) => [...shader.workgroups(tokens), 1],
              ),
            );
          } else {
            if (outScale !== 1) {
              throw new EngineError(
                EngineErrorCode.BAD_TENSOR_TYPE,
                `could not compile "${op.weight}" - a per-tensor scale on float weights is not supported by the WebGPU backend.`,
              );
            }
            const w = floatWeights(t, await t.read());
            const shader = floatMatmulShader({
              rows: w.rows,
              cols: w.cols,
              layout: w.layout,
              f16Activations: w.f16Activations,
              rowsIndexed: false,
              yStride: w.rows,
            });
            dispatches.push(
              await this.#dispatch(
                `webgpu.gather.${w.f16Activations ? "f16" : "f32"}`,
                gatherRowsShader(w.cols, w.f16Activations, false),
                [p(op.x), this.#rowIdx, gathered, step],
                (tokens) => [ceilDiv(w.cols / 2, 64), tokens, 1],
              ),
              await this.#dispatch(
                `webgpu.linear.${w.tag}.float`,
                shader.code,
                [
                  this.#upload(op.weight, w.bytes),
                  gathered,
                  p(op.out),
                  step,
                  this.#uniform(`${op.out}.params`, new Uint32Array(4)),
                ],
                (tokens) => [...shader.workgroups(tokens), 1],
              ),
            );
          }
          linearsDone++;
          progress?.({ phase: "upload", done: linearsDone, total: linearCount });
          break;
        }
        case "rope": {
          const width = graph.buffers[op.x]!;
          const headDim = width / op.heads;
          dispatches.push(
            await this.#dispatch(
              "webgpu.rope.neox",
              ropeShader(op.heads, headDim, nRot),
              [p(op.x), p(op.out), ropeTable, this.#positions, step],
              (t) => [ceilDiv(width, 64), t, 1],
            ),
          );
          break;
        }
        case "attention": {
          const l = op.layer;
          dispatches.push(
            await this.#dispatch(
              "webgpu.kv_store.f16",
              kvStoreShader(kvWidth),
              [p(op.k), p(op.v), this.#kCache[l]!, this.#vCache[l]!, this.#slots, step],
              (t) => [ceilDiv(kvWidth / 2, 64), t, 1],
            ),
          );
          const shader = attentionShader({
            nHead: hp.nHead,
            nHeadKv: hp.nHeadKv,
            headDim: hp.headDim,
            maxPages: this.#maxPages,
          });
          dispatches.push(
            await this.#dispatch(
              "webgpu.attention.f16kv.online_softmax",
              shader.code,
              [
                p(op.q),
                this.#kCache[l]!,
                this.#vCache[l]!,
                this.#pageTable,
                this.#seqRow,
                this.#positions,
                p(op.out),
                step,
              ],
              (t) => [hp.nHead, t, 1],
            ),
          );
          break;
        }
        case "add":
        case "glu": {
          const n = graph.buffers[op.out]!;
          const kind = op.kind === "add" ? "add" : op.activation;
          const [a, b] = op.kind === "add" ? [op.a, op.b] : [op.gate, op.up];
          dispatches.push(
            await this.#dispatch(
              `webgpu.${op.kind === "add" ? "add" : `glu.${kind}`}.f32`,
              elementwiseShader(kind, n),
              [p(a), p(b), p(op.out), step],
              (t) => grid1(ceilDiv(t * n, 256)),
            ),
          );
          break;
        }
        case "output": {
          const { w, chunks } = await floatTable(op.weight);
          dispatches.push(
            await this.#dispatch(
              `webgpu.gather_rows.${w.f16Activations ? "f16" : "f32"}`,
              gatherRowsShader(w.cols, w.f16Activations, true),
              [p(op.x), this.#rowIdx, gathered, step],
              (_t, rowsWanted) => [ceilDiv(w.cols / 2, 64), rowsWanted, 1],
            ),
          );
          for (const { buffer: chunk, r0, rows } of chunks) {
            const shader = floatMatmulShader({
              rows,
              cols: w.cols,
              layout: w.layout,
              f16Activations: w.f16Activations,
              rowsIndexed: true,
              yStride: vocab,
            });
            dispatches.push(
              await this.#dispatch(
                `webgpu.output.${w.tag}.tiled`,
                shader.code,
                [
                  chunk,
                  gathered,
                  this.#logits,
                  step,
                  this.#uniform(`head[${r0}].params`, new Uint32Array([r0, 0, 0, 0])),
                ],
                (_t, rowsWanted) => [...shader.workgroups(rowsWanted), 1],
              ),
            );
          }
          break;
        }
      }
      plan.push({
        op,
        reads: opReads(op),
        dispatches,
        ...(requantize === undefined ? {} : { requantize }),
      });
      for (const name of opReads(op)) {
        if (lastUse.get(name) === i) {
          const phys = this.#phys.get(name)!;
          const pool = free.get(phys.width) ?? [];
          pool.push(phys);
          free.set(phys.width, pool);
        }
      }
    }
    this.#plan = plan;
    this.#topK = await this.#dispatch(
      `webgpu.topk${subgroups ? ".subgroups" : ""}`,
      topKShader(vocab, GPU_TOP_K_MAX, subgroups),
      [this.#logits, this.#kOf, this.#topIds, this.#topVals, step],
      (_t, rows) => [rows, 1, 1],
    );
  }

  // ---------------------------------------------------------------- sequences

  kernelCounts(): ReadonlyMap<string, number> {
    return new Map(this.#counts);
  }

  capacity(): Capacity {
    this.#sequences.assertAlive();
    const perPage = KV_PAGE * this.#kvBytesPerToken;
    return {
      kvBytesPerToken: this.#kvBytesPerToken,
      kvBudgetBytes: this.#kvBudget,
      kvUsedBytes: this.#kv.usedPages * perPage,
      freeBytes: this.#kv.freePages * perPage,
      maxSequences: undefined,
      liveSequences: this.#sequences.size,
      contextLength: this.contextLength,
    };
  }

  createSequence(): number {
    const id = this.#sequences.add({ length: 0 });
    this.#kv.create(id);
    return id;
  }

  forkSequence(sequence: number): number {
    const src = this.#sequences.get(sequence);
    const id = this.#sequences.add({ length: src.length });
    this.#kv.fork(sequence, id);
    return id;
  }

  truncateSequence(sequence: number, length: number): void {
    this.#sequences.truncate(sequence, length);
    this.#kv.truncate(sequence, length);
  }

  freeSequence(sequence: number): void {
    this.#sequences.delete(sequence);
    this.#kv.free(sequence);
  }

  sequenceLength(sequence: number): number {
    return this.#sequences.get(sequence).length;
  }

  // ---------------------------------------------------------------- steps

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
    if (this.#lost !== undefined) {
      throw new EngineError(
        EngineErrorCode.DEVICE_LOST,
        `could not run the step - the GPU device was lost (${this.#lost}).\nLoad the model again.`,
      );
    }
    const hp = this.description.hparams;
    const graph = this.description.graph;
    const total = validateStep(
      runs,
      (id) => this.#sequences.get(id).length,
      hp.vocabSize,
      this.contextLength,
    );
    checkStepBuffers(graph, total, capture, inputs, this.#maxBatch);
    const names = capture?.buffers ?? [];
    const flat = flattenRuns(runs, total, (id) => this.#sequences.get(id).length);
    // KV pages for the whole step first: a step that cannot fit fails before any state changes.
    const copies = this.#kv.prepare(
      runs.map((r) => {
        const start = this.#sequences.get(r.sequence).length;
        return { sequence: r.sequence, start, end: start + r.tokens.length };
      }),
    );
    // Per row: the reduction of the run it belongs to.
    const rowReduce: (LogitsReduction | undefined)[] = [];
    let index = 0;
    for (const run of runs) {
      for (let i = 0; i < run.tokens.length; i++) {
        if (flat.wantLogits[index + i] === 1) {
          rowReduce.push(run.reduce);
        }
      }
      index += run.tokens.length;
    }
    const vocab = hp.vocabSize;
    const fullRows = new Float32Array(flat.rows * vocab);
    const ids = new Int32Array(flat.rows * GPU_TOP_K_MAX);
    const vals = new Float32Array(flat.rows * GPU_TOP_K_MAX);
    const captured = new Map<string, Float32Array>();
    let row = 0;
    for (let start = 0; start < total; start += this.#maxBatch) {
      const end = Math.min(total, start + this.#maxBatch);
      let rows = 0;
      for (let i = start; i < end; i++) {
        rows += flat.wantLogits[i]!;
      }
      await this.#submit(
        flat,
        start,
        end,
        rowReduce.slice(row, row + rows),
        start === 0 ? copies : [],
        names,
        inputs,
        captured,
        {
          full: fullRows.subarray(row * vocab, (row + rows) * vocab),
          ids: ids.subarray(row * GPU_TOP_K_MAX, (row + rows) * GPU_TOP_K_MAX),
          vals: vals.subarray(row * GPU_TOP_K_MAX, (row + rows) * GPU_TOP_K_MAX),
        },
      );
      row += rows;
    }
    for (const run of runs) {
      this.#sequences.get(run.sequence).length += run.tokens.length;
    }
    // Split per run.
    const result: RunLogits[] = [];
    row = 0;
    index = 0;
    for (const run of runs) {
      let rows = 0;
      for (let i = 0; i < run.tokens.length; i++) {
        rows += flat.wantLogits[index + i]!;
      }
      index += run.tokens.length;
      const reduce = run.reduce;
      const k = gpuK(reduce);
      if (k === 0) {
        result.push(
          reduceRows(
            run.sequence,
            rows,
            fullRows.subarray(row * vocab, (row + rows) * vocab),
            vocab,
            reduce,
          ),
        );
      } else {
        const argmax = new Int32Array(rows);
        const topIds = new Int32Array(rows * k);
        const topVals = new Float32Array(rows * k);
        for (let r = 0; r < rows; r++) {
          argmax[r] = ids[(row + r) * GPU_TOP_K_MAX]!;
          for (let j = 0; j < k; j++) {
            topIds[r * k + j] = ids[(row + r) * GPU_TOP_K_MAX + j]!;
            topVals[r * k + j] = vals[(row + r) * GPU_TOP_K_MAX + j]!;
          }
        }
        result.push(
          reduce === "argmax"
            ? { sequence: run.sequence, rows, logits: new Float32Array(0), argmax }
            : {
                sequence: run.sequence,
                rows,
                logits: new Float32Array(0),
                argmax,
                top: { k, ids: topIds, logits: topVals },
              },
        );
      }
      row += rows;
    }
    return names.length > 0 ? { runs: result, captured } : { runs: result };
  }

  /** Records, submits and reads back one GPU step over tokens [start, end) of the flat step. */
  async #submit(
    flat: FlatStep,
    start: number,
    end: number,
    rowReduce: readonly (LogitsReduction | undefined)[],
    copies: readonly { from: number; to: number }[],
    captureNames: readonly string[],
    inputs: ReadonlyMap<string, Float32Array> | undefined,
    captured: Map<string, Float32Array>,
    out: { full: Float32Array; ids: Int32Array; vals: Float32Array },
  ): Promise<void> {
    const device = this.#device;
    const graph = this.description.graph;
    const T = end - start;
    const R = rowReduce.length;
    const vocab = this.description.hparams.vocabSize;
    // --- inputs of the step ---
    this.#write(this.#stepUniform, 0, new Uint32Array([T, R, 0, 0]));
    const positions = new Uint32Array(T);
    const slots = new Uint32Array(T);
    const seqRow = new Uint32Array(T);
    const tableRows: number[] = [];
    const pageTable = new Uint32Array(T * this.#maxPages);
    for (let i = 0; i < T; i++) {
      const seq = flat.sequences[start + i]!;
      const pos = flat.positions[start + i]!;
      const pages = this.#kv.pages(seq);
      let r = tableRows.indexOf(seq);
      if (r < 0) {
        r = tableRows.length;
        tableRows.push(seq);
        pageTable.set(pages, r * this.#maxPages);
      }
      positions[i] = pos;
      seqRow[i] = r;
      slots[i] = pages[Math.floor(pos / KV_PAGE)]! * KV_PAGE + (pos % KV_PAGE);
    }
    this.#write(this.#positions, 0, positions);
    this.#write(this.#slots, 0, slots);
    this.#write(this.#seqRow, 0, seqRow);
    this.#write(this.#pageTable, 0, pageTable.subarray(0, tableRows.length * this.#maxPages));
    const rowIdx = new Uint32Array(Math.max(1, R));
    let r = 0;
    for (let i = start; i < end; i++) {
      if (flat.wantLogits[i] === 1) {
        rowIdx[r++] = i - start;
      }
    }
    this.#write(this.#rowIdx, 0, rowIdx);
    const kOf = new Uint32Array(Math.max(1, R));
    let anyK = false;
    for (let j = 0; j < R; j++) {
      kOf[j] = gpuK(rowReduce[j]);
      anyK ||= kOf[j]! > 0;
    }
    this.#write(this.#kOf, 0, kOf);
    this.#write(this.#tokens, 0, Uint32Array.from(flat.tokens.subarray(start, end)));

    const staged = new Map<string, GPUBuffer>();
    for (const [name, values] of inputs ?? []) {
      const b = device.createBuffer({
        size: Math.max(16, values.byteLength),
        usage: COPY_SRC | COPY_DST,
      });
      this.#write(b, 0, values);
      staged.set(name, b);
    }
    const captureBuffers = new Map<string, GPUBuffer>();
    for (const name of captureNames) {
      captureBuffers.set(
        name,
        device.createBuffer({
          size: Math.max(16, T * graph.buffers[name]! * 4),
          usage: MAP_READ | COPY_DST,
        }),
      );
    }

    // --- the graph, recorded into one command buffer ---
    const encoder = device.createCommandEncoder({ label: "step" });
    for (const { from, to } of copies) {
      for (let l = 0; l < this.#kCache.length; l++) {
        for (const cache of [this.#kCache[l]!, this.#vCache[l]!]) {
          // A buffer cannot be copied onto itself: through a one-page scratch buffer.
          const scratch = this.#pageScratch;
          encoder.copyBufferToBuffer(cache, from * this.#pageBytes, scratch, 0, this.#pageBytes);
          encoder.copyBufferToBuffer(scratch, 0, cache, to * this.#pageBytes, this.#pageBytes);
        }
      }
    }
    let pass: GPUComputePassEncoder | undefined;
    const run = (d: Dispatch) => {
      pass ??= encoder.beginComputePass();
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      const [x, y, z] = d.grid(T, R);
      pass.dispatchWorkgroups(x, y, z);
      if (d.kernel !== "") {
        this.#count(d.kernel);
      }
    };
    const endPass = () => {
      pass?.end();
      pass = undefined;
    };
    for (const planned of this.#plan) {
      const { op } = planned;
      if (op.kind === "output" && R === 0) {
        continue;
      }
      const injected = planned.reads.filter((name) => staged.has(name));
      if (injected.length > 0) {
        endPass();
        for (const name of injected) {
          encoder.copyBufferToBuffer(
            staged.get(name)!,
            0,
            this.#phys.get(name)!.buffer,
            0,
            T * graph.buffers[name]! * 4,
          );
        }
      }
      const dispatches =
        injected.length > 0 && planned.requantize !== undefined && planned.dispatches.length === 1
          ? [planned.requantize, ...planned.dispatches]
          : planned.dispatches;
      for (const d of dispatches) {
        run(d);
      }
      if (op.kind !== "output" && captureBuffers.has(op.out)) {
        endPass();
        encoder.copyBufferToBuffer(
          this.#phys.get(op.out)!.buffer,
          0,
          captureBuffers.get(op.out)!,
          0,
          T * graph.buffers[op.out]! * 4,
        );
      }
      if (op.kind === "output" && captureBuffers.has(op.out)) {
        endPass();
        encoder.copyBufferToBuffer(this.#logits, 0, captureBuffers.get(op.out)!, 0, R * vocab * 4);
      }
    }
    if (anyK) {
      run(this.#topK);
    }
    endPass();
    // --- read back only what was asked: full rows, and the reduced ids/values ---
    const topBytes = this.#maxBatch * GPU_TOP_K_MAX * 4;
    const fullBytes = this.#maxBatch * vocab * 4;
    const fullRanges: [number, number][] = [];
    for (let j = 0; j < R; j++) {
      if (gpuK(rowReduce[j]) === 0) {
        const last = fullRanges.at(-1);
        if (last !== undefined && last[1] === j) {
          last[1] = j + 1;
        } else {
          fullRanges.push([j, j + 1]);
        }
      }
    }
    for (const [a, b] of fullRanges) {
      encoder.copyBufferToBuffer(
        this.#logits,
        a * vocab * 4,
        this.#readback,
        a * vocab * 4,
        (b - a) * vocab * 4,
      );
    }
    if (anyK) {
      encoder.copyBufferToBuffer(this.#topIds, 0, this.#readback, fullBytes, R * GPU_TOP_K_MAX * 4);
      encoder.copyBufferToBuffer(
        this.#topVals,
        0,
        this.#readback,
        fullBytes + topBytes,
        R * GPU_TOP_K_MAX * 4,
      );
    }
    device.pushErrorScope("out-of-memory");
    device.pushErrorScope("validation");
    device.queue.submit([encoder.finish()]);
    const validation = await device.popErrorScope();
    const oom = await device.popErrorScope();
    try {
      if (oom !== null) {
        throw new EngineError(
          EngineErrorCode.OUT_OF_MEMORY,
          `could not run the step - out of GPU memory (${oom.message}).`,
        );
      }
      if (validation !== null) {
        throw new EngineError(
          EngineErrorCode.BACKEND_UNAVAILABLE,
          `could not run the step on the GPU - ${validation.message}`,
        );
      }
      if (fullRanges.length > 0 || anyK) {
        await this.#readback.mapAsync(MAP_READ);
        const mapped = this.#readback.getMappedRange();
        for (const [a, b] of fullRanges) {
          out.full.set(new Float32Array(mapped, a * vocab * 4, (b - a) * vocab), a * vocab);
        }
        if (anyK) {
          out.ids.set(new Int32Array(mapped, fullBytes, R * GPU_TOP_K_MAX));
          out.vals.set(new Float32Array(mapped, fullBytes + topBytes, R * GPU_TOP_K_MAX));
        }
        this.#readback.unmap();
      } else {
        await device.queue.onSubmittedWorkDone();
      }
      for (const [name, buffer] of captureBuffers) {
        await buffer.mapAsync(MAP_READ);
        const values = new Float32Array(buffer.getMappedRange().slice(0));
        buffer.unmap();
        const width = graph.buffers[name]!;
        const n = name === graph.logits ? R * vocab : T * width;
        const prev = captured.get(name);
        captured.set(
          name,
          prev === undefined ? values.subarray(0, n) : concat(prev, values.subarray(0, n)),
        );
      }
    } finally {
      for (const b of [...staged.values(), ...captureBuffers.values()]) {
        b.destroy();
      }
    }
  }

  #count(kernel: string): void {
    this.#counts.set(kernel, (this.#counts.get(kernel) ?? 0) + 1);
  }

  #destroyBuffers(): void {
    for (const b of this.#owned.splice(0)) {
      b.destroy();
    }
    this.#bytes = 0;
  }

  async dispose(): Promise<void> {
    if (!this.#sequences.dispose()) {
      return;
    }
    await this.#steps.idle();
    this.#destroyBuffers();
  }
}

/** k of a reduction computed on the GPU (0: full rows, reduced on the host if at all). */
function gpuK(reduce: LogitsReduction | undefined): number {
  if (reduce === "argmax") {
    return 1;
  }
  if (reduce !== undefined && reduce !== "full" && reduce.topK <= GPU_TOP_K_MAX) {
    return reduce.topK;
  }
  return 0;
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** The graph buffers an op reads. */
function opReads(op: GraphOp): string[] {
  switch (op.kind) {
    case "embed":
      return [];
    case "rms_norm":
    case "linear":
    case "rope":
    case "output":
      return [op.x];
    case "attention":
      return [op.q, op.k, op.v];
    case "add":
      return [op.a, op.b];
    case "glu":
      return [op.gate, op.up];
  }
}
