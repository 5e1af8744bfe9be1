/**
 * The whole native surface of the addon, as one TypeScript declaration. Bulk data crosses only
 * as typed arrays; everything slow is a Promise: loading a model and a bandwidth probe (AsyncWorkers
 * on libuv's pool), and a step (on the model's own step thread, native/job_thread.h).
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

/** Op kinds as numbers in {@link NativeOpSpec}: engine-core's NATIVE_OP_IDS. */
export { NATIVE_OP_IDS as NativeOpKind } from "@bitnet-ts/engine-core";

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
  /** "auto", "scalar", "avx2", "avxvnni", "avx512vnni", "amx", "neon", "neon-dotprod" or "neon-i8mm". */
  readonly kernelPath: string;
  /**
   * "q8_0" or "q6_k": requantize the output head to that type at load (unless it has it) and run
   * it on that type's quantized kernel; "": the file's head as it is.
   */
  readonly head: "" | HeadQuantization;
  /**
   * "repack": TQ1_0 weights are decoded to TQ2_0 at load (2.06 bits per weight in memory);
   * "direct": read as they are in the file (1.69 bits), unpacked by the kernels.
   */
  readonly tq1: "repack" | "direct";
  /** Use tensor data in place from a read-only mapping (true) or read it into huge-page memory (false). */
  readonly mmap: boolean;
  readonly tensors: readonly NativeTensorSpec[];
  readonly ops: readonly NativeOpSpec[];
  /** Row width of every buffer id. */
  readonly bufferWidths: readonly number[];
}

/** A loaded model (from `NativeBinding.loadModel`; it cannot be constructed directly). */
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
    /**
     * Bytes of the file the page cache held only in part of their 2 MiB range, dropped before
     * faulting so that the range came back as one 2 MiB folio (read again from the file).
     */
    rereadBytes: number;
    loadedBytes: number;
    repackedBytes: number;
    /** Wall time per op kind (worker 0), for profiling. */
    opMilliseconds: Record<string, number>;
    /** KV cache bytes per token of one sequence: nLayer × 2 (K and V) × nHeadKv × headDim × 2 (f16). */
    kvBytesPerToken: number;
    /** KV cache bytes allocated now for all sequences (their capacities, which grow by doubling). */
    kvAllocatedBytes: number;
    /** KV cache bytes of freed sequences kept for reuse by new ones (at most one full-context sequence's). */
    kvSpareBytes: number;
    /** Activation buffers and quantization / attention scratch as allocated now (grow with the largest step). */
    scratchBytes: number;
    /**
     * Bytes of weights the threads asked L2 for between one-token steps since the load: the next
     * step's first projections, requested while the threads wait for it (0 with
     * BITNET_DECODE_WARM_BETWEEN_BYTES=0 set as the model loaded).
     */
    warmedBetweenStepsBytes: number;
    /**
     * Ops that a step (of one token or several) runs inside the op that consumes them, on every
     * thread, with no barrier of their own, by kind (`rms_norm`, `glu`, `add`, `rope`), and the
     * residual adds run inside the projection before them (`add_in_projection`); empty when
     * BITNET_DECODE_FUSE=0 was set as the model loaded.
     */
    decodeFusedOps: Record<string, number>;
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

/**
 * Load phases reported to `loadModel`'s onProgress, each with bytes done of total (a start at 0,
 * then about every tenth, then the end; a few dozen calls per load in all):
 * - "map": the file is being mapped read-only (mmap: true);
 * - "prefault": bytes of the mapping faulted in (read from disk unless cached);
 * - "read": bytes of tensor data read into memory (mmap: false);
 * - "repack": bytes of tensors converted for the kernels (TQ1_0 → TQ2_0, BF16 → F32, the Q8_0 head).
 */
export type NativeLoadPhase = "map" | "prefault" | "read" | "repack";

export interface NativeBinding {
  /**
   * Builds the model off the JS thread (mmap/read, repack, prefault); progress in bytes.
   *
   * Every progress call arrives before the promise settles (phases: {@link NativeLoadPhase}).
   * Rejects with an Error that says what failed and where (the file cannot be opened or mapped, a
   * tensor lies outside it or has too few bytes, a type or shape the kernels cannot run, out of
   * memory), or with a TypeError naming a malformed config field; a rejected load has freed
   * everything it allocated. If onProgress throws, the load rejects with that error.
   */
  loadModel(
    config: NativeModelConfig,
    onProgress?: (phase: string, done: number, total: number) => void,
  ): Promise<NativeModel>;
  /** Read bandwidth in GB/s, one figure per repetition, streaming as the matvec kernels do. */
  measureBandwidth(probe: BandwidthProbe): Promise<number[]>;
  /** Kernel paths this CPU can run, best last. */
  availablePaths(): string[];
  /**
   * How far ahead (bytes) the x86 one-token loops prefetch weight rows into L1, as this process
   * runs them (`BITNET_DECODE_PREFETCH_BYTES`, read once, or the CPU's defaults), and the
   * defaults: `i2s` for I2_S rows, `other` for TQ2_0 rows (0: no software prefetch). The best
   * distance depends on the CPU (2 KiB on Intel Xeons; 6 KiB on AMD Zen 5). `l2`: how far ahead
   * the I2_S rows are also asked into L2 by the VNNI paths (`BITNET_DECODE_PREFETCH_L2_BYTES`; 16
   * KiB on Intel, 0 (none) elsewhere), `l2Avx2` by the avx2 path (the same variable sets both; 6
   * KiB on Intel, 0 elsewhere; that path's row pairs round both of its distances to whole pairs
   * of rows). `head`: how far ahead the F16 head's rows are asked for
   * (`BITNET_DECODE_PREFETCH_HEAD_BYTES`; 3 KiB into L2 on Intel, 4 KiB elsewhere).
   * `vectorBits`: how wide the avx512vnni path's one-token I2_S loop reads
   * (`BITNET_DECODE_VECTOR_BITS`; 256 on Intel, 512 elsewhere). `headBits`: how wide the
   * avx512vnni path's F16 head reads in every step (`BITNET_HEAD_VECTOR_BITS`; 256, the avx2
   * path's head, on Intel; 512 elsewhere; changes the logits' rounding). `nonTemporal`: whether the
   * `i2s`, `other` and `head` requests are PREFETCHNTA instead of into L1 or L2
   * (`BITNET_DECODE_PREFETCH_NTA`, 0 or 1; off on Intel, on elsewhere).
   */
  decodePrefetch(): {
    i2s: number;
    other: number;
    l2: number;
    l2Avx2: number;
    head: number;
    vectorBits: number;
    headBits: number;
    nonTemporal: boolean;
    defaultI2s: number;
    defaultOther: number;
    defaultL2: number;
    defaultL2Avx2: number;
    defaultHead: number;
    defaultVectorBits: number;
    defaultHeadBits: number;
    defaultNonTemporal: boolean;
  };
  /**
   * One kernel path's activation quantizer, for tests that hold every path to the scalar one:
   * "i8" quantizes all values as one row (one scale and Σq), "q8k" in Q8_K blocks of 256 (a scale
   * and Σq per block). Throws for a path this CPU lacks or a length the format cannot take.
   */
  quantizeActivations(
    kernelPath: string,
    format: "i8" | "q8k",
    values: Float32Array,
  ): { q: Int8Array; scales: Float32Array; sums: Int32Array };
  /** The load-time Q6_K requantizer (ggml quantize_row_q6_K_ref), for tests. */
  quantizeQ6K(values: Float32Array): Uint8Array;
  /**
   * One path's Q6_K head as a model runs it: the T rows of `x` quantized to Q8_K by the path's
   * quantizer, then its Q6_K × Q8_K kernel against `rows` rows of Q6_K `weights`; T × rows
   * logits. For tests that hold every path to the TypeScript reference.
   */
  q6kGemm(kernelPath: string, weights: Uint8Array, rows: number, x: Float32Array): Float32Array;
  /**
   * One path's F16 kernel (the output head) against `rows` rows of f16 `weights`, the T rows of
   * `x` rounded to f16 values first as the model rounds the head's input; T × rows outputs. For
   * tests (T = 1 runs the decode loop).
   */
  f16Gemm(kernelPath: string, weights: Uint16Array, rows: number, x: Float32Array): Float32Array;
  /**
   * One path's attention scores of `heads` query heads sharing one KV head: `q` holds heads × hd
   * f16-rounded values, `keys` the head's transposed f16 keys (hd rows of `stride` positions, the
   * first `len` of each used). heads × len scores, each Σ_i q·k summed in i order. For tests.
   */
  attnScores(
    kernelPath: string,
    q: Float32Array,
    heads: number,
    keys: Uint16Array,
    stride: number,
    len: number,
  ): Float32Array;
  /**
   * One path's attention output of `heads` query heads sharing one KV head: `p` holds heads × len
   * f16-rounded probabilities, `values` the head's f16 values (len rows, `kvw` apart, the first
   * `hd` of each used). heads × hd outputs, each Σ_j p·v summed in j order; with `carry` (heads ×
   * hd sums over earlier positions) the sums continue from it. For tests.
   */
  attnValues(
    kernelPath: string,
    p: Float32Array,
    heads: number,
    values: Uint16Array,
    kvw: number,
    hd: number,
    len: number,
    carry?: Float32Array,
  ): Float32Array;
  /**
   * The model's attention softmax with one path's exp: `rows` rows of `len` scores (rows × len)
   * scaled, then exp(s − row max) / Σ (the sum in double, in position order). Returns the
   * probabilities before their f16 rounding. With `lengths`, row r holds only its first
   * lengths[r] scores (the rest left as given), as a prompt's tokens scored together. For tests.
   */
  /**
   * Each of `rows` rows of `logits` (rows × vocab) reduced to its k best, ranked as engine-core's
   * topKRows ranks them (higher value, then lower id; NaN after every number), into `ids` and
   * `values` (rows × k each). k = 1 is the greedy argmax. Synchronous (tens of µs a 128k row).
   */
  topKRows(
    logits: Float32Array,
    rows: number,
    vocab: number,
    k: number,
    ids: Int32Array,
    values: Float32Array,
  ): void;
  softmaxRows(
    kernelPath: string,
    scores: Float32Array,
    rows: number,
    len: number,
    scale: number,
    lengths?: Int32Array,
  ): Float32Array;
  /**
   * One path's ternary projection as a model runs it: the T rows of `x` (T × cols) quantized by
   * the path's quantizer (per-token int8 for I2_S, Q8_K for TQ2_0), then its I2_S or TQ2_0 kernel
   * against `rows` rows of `weights` (I2_S bytes with their 32-byte scale tail, or TQ2_0 blocks).
   * T × rows outputs. For tests that hold every path to the TypeScript reference; T picks which
   * multi-token variant runs. With `weightOffset` (0-63) the kernel reads a copy of the weights
   * that starts that many bytes past a 64-byte boundary (a mapped GGUF file aligns tensors to 32).
   */
  ternaryGemm(
    kernelPath: string,
    format: "i2_s" | "tq2_0",
    weights: Uint8Array,
    rows: number,
    cols: number,
    x: Float32Array,
    weightOffset?: number,
  ): Float32Array;
  /**
   * The matrix ops' row sharing (work stealing) on its own: `rows` rows claimed by `threads`
   * threads, `slowThread` sleeping `delayMs` after each of its claims. Per row, the thread that
   * ran it (-1: none, -2: more than one). For tests.
   */
  rowStealCoverage(
    rows: number,
    threads: number,
    align: number,
    minRows: number,
    slowThread: number,
    delayMs: number,
  ): Int32Array;
  abiVersion: number;
}

/** Output-head types the CPU backend can requantize to at load. */
export type HeadQuantization = "q8_0" | "q6_k";
