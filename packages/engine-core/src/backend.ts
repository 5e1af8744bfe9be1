/**
 * The Backend interface. A backend compiles a model description once and then runs whole
 * forward steps: `step` takes runs of tokens for one or more sequences, appends them to those
 * sequences' KV caches and returns the logits asked for, in one call.
 */
import type { ModelDescription } from "./model";

/** Tokens to append to one sequence in a step. */
export interface SequenceRun {
  readonly sequence: number;
  readonly tokens: readonly number[];
  /** Which of the run's positions need logits (default "last"). */
  readonly logits?: "last" | "all" | "none";
}

export interface RunLogits {
  readonly sequence: number;
  /** Row-major [rows × vocab]: one row per token that asked for logits, in order. */
  readonly logits: Float32Array;
  readonly rows: number;
}

export interface StepResult {
  readonly runs: readonly RunLogits[];
}

/** Intermediate buffers a step may copy out for inspection (op-by-op checks, debugging). */
export interface CaptureRequest {
  /** Buffer names, e.g. ["attn_norm-0", "l_out-1", "result_norm"]. */
  readonly buffers: readonly string[];
}

export interface CompiledModel {
  readonly description: ModelDescription;
  readonly backendName: string;
  /** The context length every sequence is limited to. */
  readonly contextLength: number;
  /** Kernel ids executed so far and how often (for run receipts). */
  kernelCounts(): ReadonlyMap<string, number>;
  createSequence(): number;
  /** Copies a sequence (its KV cache) into a new one; returns the new id. */
  forkSequence(sequence: number): number;
  /** Drops tokens from position `length` on. */
  truncateSequence(sequence: number, length: number): void;
  freeSequence(sequence: number): void;
  sequenceLength(sequence: number): number;
  /** Number of live sequences. */
  readonly sequenceCount: number;
  step(
    runs: readonly SequenceRun[],
    capture?: CaptureRequest,
  ): Promise<StepResult & { captured?: ReadonlyMap<string, Float32Array> }>;
  dispose(): Promise<void>;
}

export interface CompileOptions {
  /** Maximum tokens per sequence (default: the model's context length). */
  readonly contextLength?: number;
  /** Threads for backends that use them. */
  readonly threads?: number;
}

export interface Backend {
  readonly name: string;
  /** True when compile() reads tensor bytes from memory (the model must be read with its data). */
  readonly needsTensorData: boolean;
  compile(model: ModelDescription, options?: CompileOptions): Promise<CompiledModel>;
}
