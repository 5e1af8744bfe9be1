/**
 * The whole native surface of the addon, as one TypeScript declaration. Bulk data crosses only
 * as typed arrays; everything slow is a Promise (an AsyncWorker in C++).
 */

/** ggml type ids the native code executes. */
export const NATIVE_TYPES = {
  F32: 0,
  F16: 1,
  Q8_0: 8,
  Q6_K: 14,
  BF16: 30,
  TQ1_0: 34,
  TQ2_0: 35,
  I2_S: 36,
} as const;

export const NativeOpKind = {
  embed: 0,
  rms_norm: 1,
  linear: 2,
  rope: 3,
  attention: 4,
  add: 5,
  glu: 6,
  output: 7,
} as const;

export interface NativeTensorSpec {
  readonly name: string;
  /** ggml type id. */
  readonly type: number;
  readonly ne0: number;
  readonly ne1: number;
  /** Absolute byte offset of the data in the file. */
  readonly offset: number;
  readonly bytes: number;
}

export interface NativeOpSpec {
  readonly kind: number;
  readonly in0: number;
  readonly in1: number;
  readonly in2: number;
  readonly out: number;
  readonly weight: number;
  readonly scale: number;
  readonly heads: number;
  readonly layer: number;
  /** 0 relu², 1 SiLU. */
  readonly act: number;
}

export interface NativeModelConfig {
  readonly path: string;
  readonly nEmbd: number;
  readonly nLayer: number;
  readonly nFf: number;
  readonly nHead: number;
  readonly nHeadKv: number;
  readonly headDim: number;
  readonly nRot: number;
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly ropeFreqBase: number;
  readonly rmsEps: number;
  readonly threads: number;
  /** Most tokens per step (buffers are sized for it). */
  readonly maxBatch: number;
  /** "auto", "scalar", "avx2", "avx512vnni" or "neon". */
  readonly kernelPath: string;
  /** Requantize an F16 output head to Q8_0 at load. */
  readonly headQ8_0: boolean;
  /** Use tensor data in place from a read-only mapping (true) or read it into huge-page memory (false). */
  readonly mmap: boolean;
  readonly tensors: readonly NativeTensorSpec[];
  readonly ops: readonly NativeOpSpec[];
  /** Row width of every buffer id. */
  readonly bufferWidths: readonly number[];
}

export interface NativeModel {
  createSequence(id: number): void;
  freeSequence(id: number): void;
  forkSequence(source: number, target: number): void;
  truncateSequence(id: number, length: number): void;
  /**
   * One forward step over T tokens: each token's sequence id and position, which rows need
   * logits (written to `logits`, rows × vocab), and buffers to copy out after they are computed.
   */
  step(
    tokens: Int32Array,
    sequences: Int32Array,
    positions: Int32Array,
    wantLogits: Uint8Array,
    logits: Float32Array,
    captureIds: Int32Array,
    captureOut: Float32Array[],
    /** Buffers whose values are replaced right before each op that reads them (op-by-op checks). */
    injectIds?: Int32Array,
    injectData?: Float32Array[],
  ): Promise<void>;
  kernelCounts(): Record<string, number>;
  info(): {
    kernelPath: string;
    threads: number;
    mappedBytes: number;
    /** Bytes of the file mapping held in 2 MiB page-table entries (0 without mmap). */
    hugeMappedBytes: number;
    loadedBytes: number;
    repackedBytes: number;
    /** Wall time per op kind (worker 0), for profiling. */
    opMilliseconds: Record<string, number>;
  };
  dispose(): void;
}

export interface BandwidthProbe {
  /** A file to map read-only and read (the model's weights as mmap uses them); omit for anonymous huge-page memory. */
  readonly path?: string;
  readonly offset?: number;
  /** Bytes to read per repetition (≥ 1 MiB; use several times the last-level cache). */
  readonly bytes: number;
  readonly threads: number;
  readonly reps: number;
  readonly kernelPath?: string;
}

export interface NativeBinding {
  NativeModel: new (config: NativeModelConfig) => NativeModel;
  /** Read bandwidth in GB/s, one figure per repetition, streaming as the matvec kernels do. */
  measureBandwidth(probe: BandwidthProbe): Promise<number[]>;
  /** Kernel paths this CPU can run, best last. */
  availablePaths(): string[];
  abiVersion: number;
}
