/**
 * The Backend interface, designed once for every backend (the TypeScript reference, the native
 * CPU kernels, GPUs): a backend compiles a model description once (off the JS thread where the
 * work is heavy) and then runs whole forward steps: `step` takes runs of tokens for one or more
 * sequences, appends them to those sequences' KV caches and returns what was asked of the
 * logits, in one call.
 */
import type { KernelRules } from "@bitnet-ts/receipts";
import type { ModelDescription } from "./model";

/**
 * How the logits of each requested row come back. "full": the whole vocabulary row (default).
 * "argmax": only the id of the largest logit. `{ topK }`: the k largest logits and their ids.
 * A GPU backend reduces on the device so that a step copies k values per row, not the vocabulary.
 */
export type LogitsReduction = "full" | "argmax" | { readonly topK: number };

/** Tokens to append to one sequence in a step. */
export interface SequenceRun {
  readonly sequence: number;
  readonly tokens: readonly number[];
  /** Which of the run's positions need logits (default "last"). */
  readonly logits?: "last" | "all" | "none";
  /** What to return for each of those rows (default "full"). */
  readonly reduce?: LogitsReduction;
  /**
   * The caller reads this run's logits before it steps the sequence again (as llama.cpp's
   * llama_get_logits, valid until the next decode): the backend may return a buffer it reuses
   * for the sequence instead of a fresh array each step, which a generation loop would
   * otherwise leave as garbage at 0.5 MB a token. Default false: the array is the caller's.
   */
  readonly transient?: boolean;
}

/** The k largest logits of each row, highest first; equal logits: lower id first. */
export interface TopLogits {
  readonly k: number;
  /** [rows × k] token ids. */
  readonly ids: Int32Array;
  /** [rows × k] their logits. */
  readonly logits: Float32Array;
}

export interface RunLogits {
  readonly sequence: number;
  /** Rows that asked for logits, in order. */
  readonly rows: number;
  /** Row-major [rows × vocab] with reduce "full"; empty (length 0) when the run asked for a reduction. */
  readonly logits: Float32Array;
  /** Per row, the id of the largest logit (lowest id on ties); set for "argmax" and top-k. */
  readonly argmax?: Int32Array;
  /** Set for `{ topK }`. */
  readonly top?: TopLogits;
}

export interface StepResult {
  readonly runs: readonly RunLogits[];
}

/** Intermediate buffers a step may copy out for inspection (op-by-op checks, debugging). */
export interface CaptureRequest {
  /** Buffer names, e.g. ["attn_norm-0", "l_out-1", "result_norm"]. */
  readonly buffers: readonly string[];
}

export type StepOutput = StepResult & { captured?: ReadonlyMap<string, Float32Array> };

/**
 * What a compiled model can still hold, for admission control (the server admits a request
 * when its tokens' KV fits, rather than counting slots).
 */
export interface Capacity {
  /** KV-cache bytes one token of one sequence takes (all layers, keys and values). */
  readonly kvBytesPerToken: number;
  /**
   * Bytes this model may give to KV caches in all: device memory left after weights and scratch
   * on a GPU, the memory budget on the host. Fixed at compile time.
   */
  readonly kvBudgetBytes: number;
  /** KV bytes the live sequences hold now (allocated, which can exceed length × per token). */
  readonly kvUsedBytes: number;
  /** Memory free right now where the KV caches live (a live reading; advisory). */
  readonly freeBytes: number;
  /** Most sequences alive at once, or undefined when only memory limits them. */
  readonly maxSequences: number | undefined;
  readonly liveSequences: number;
  /** Tokens per sequence at most. */
  readonly contextLength: number;
}

/** One line of progress while a model is compiled (weights mapped, repacked, uploaded). */
export interface LoadProgress {
  readonly phase: string;
  readonly done: number;
  readonly total: number;
}

export interface CompiledModel {
  readonly description: ModelDescription;
  readonly backendName: string;
  /** The context length every sequence is limited to. */
  readonly contextLength: number;
  /** Kernel ids executed so far and how often (for run receipts; the backend's kernelRules check them). */
  kernelCounts(): ReadonlyMap<string, number>;
  /** What the model can still hold (see Capacity). */
  capacity(): Capacity;
  createSequence(): number;
  /** Copies a sequence (its KV cache) into a new one; returns the new id. */
  forkSequence(sequence: number): number;
  /** Drops tokens from position `length` on. */
  truncateSequence(sequence: number, length: number): void;
  freeSequence(sequence: number): void;
  sequenceLength(sequence: number): number;
  /** Number of live sequences. */
  readonly sequenceCount: number;
  /**
   * One forward step. Steps run one at a time in call order: a caller whose step is queued
   * behind another gets its own result or its own error, never the other's.
   */
  step(runs: readonly SequenceRun[], capture?: CaptureRequest): Promise<StepOutput>;
  /**
   * Optional (op-by-op oracle mode): right before each op runs, the buffers named in `inputs`
   * that it reads are overwritten with the given values (T × width floats, T = the step's
   * tokens), so each op can be checked in isolation against the reference backend's
   * intermediates captured on the same step. Must fit one native step.
   */
  stepWithInputs?(
    runs: readonly SequenceRun[],
    inputs: ReadonlyMap<string, Float32Array>,
    capture: CaptureRequest,
  ): Promise<StepOutput>;
  dispose(): Promise<void>;
}

export interface CompileOptions {
  /** Maximum tokens per sequence (default: the model's context length). */
  readonly contextLength?: number;
  /** Receives progress while the weights are mapped, repacked or uploaded. */
  readonly onProgress?: (progress: LoadProgress) => void;
}

/**
 * How results of this backend relate when the same tokens are stepped batched or one by one.
 * "bit-exact": identical bits (the CPU and reference backends). `{ tolerance }`: GPU reductions
 * may differ in the last bits; logits agree within this absolute difference, and the argmax is
 * the same wherever the top two logits differ by more than it.
 */
export type BatchInvariance = "bit-exact" | { readonly tolerance: number };

/** What a backend runs on, for `bitnet info`, logs and receipts. */
export interface BackendDescription {
  /** e.g. "AMD EPYC (avx512vnni)", "NVIDIA H200 (sm_90)". */
  readonly device: string;
  /** Backend-specific facts: kernel path, threads, driver version, adapter limits, … */
  readonly details: Readonly<Record<string, string | number | boolean>>;
}

export interface Backend {
  readonly name: string;
  /** True when compile() reads tensor bytes from memory (the model must be read with its data). */
  readonly needsTensorData: boolean;
  /** The guarantee the contract suite checks for this backend. */
  readonly batchInvariance: BatchInvariance;
  compile(model: ModelDescription, options?: CompileOptions): Promise<CompiledModel>;
  describe(): BackendDescription;
}

/**
 * Options per backend, keyed by backend name. Backend packages add their own entry by module
 * augmentation, so options are typed where the package is installed:
 *
 * @example
 * declare module "@bitnet-ts/engine-core" {
 *   interface BackendOptionsByName { cpu: CpuBackendOptions }
 * }
 */
// biome-ignore lint/suspicious/noEmptyInterface: filled in by backend packages (module augmentation)
export interface BackendOptionsByName {}

/** Options for every backend a load may try: `{ cpu: { threads: 4 }, cuda: { device: 1 } }`. */
export type BackendOptions = {
  readonly [K in keyof BackendOptionsByName]?: BackendOptionsByName[K];
} & { readonly [name: string]: Readonly<Record<string, unknown>> | undefined };

/** What a backend package exports for engine-core to load it by name. */
export interface BackendModule {
  /** Creates the backend; throws (with the reason) when it cannot run on this machine. */
  createBackend(options?: Readonly<Record<string, unknown>>): Promise<Backend> | Backend;
  /** The rules receipts from this backend are verified against (no native code is loaded). */
  readonly kernelRules: KernelRules;
}
