import type { GgmlTypeName, GgufMetadata } from "@bitnet-ts/gguf";
import type { Graph } from "../graph";
import type { FfnActivation, HParams } from "../hparams";

/** A tensor an architecture expects: its name, shape (ggml order) and allowed types. */
export interface TensorSpec {
  readonly name: string;
  readonly shape: readonly number[];
  readonly types: readonly GgmlTypeName[];
  /** Absent tensors are fine (llama.cpp's TENSOR_NOT_REQUIRED). */
  readonly optional?: boolean;
}

export interface ArchOptions {
  /** Override the FFN activation (e.g. relu² for a 2B-4T checkpoint converted to arch `bitnet`). */
  readonly ffnActivation?: FfnActivation;
}

/** One architecture: how to read its hyperparameters, which tensors it needs, its forward graph. */
export interface Architecture {
  /** `general.architecture` values this file handles. */
  readonly names: readonly string[];
  readonly description: string;
  hparams(md: GgufMetadata, arch: string, options: ArchOptions): HParams;
  tensors(hp: HParams): TensorSpec[];
  graph(hp: HParams, present: (name: string) => boolean): Graph;
}

/** Types a ternary projection may have (I2_S, TQ*, or float weights holding ternary values). */
export const PROJECTION_TYPES: readonly GgmlTypeName[] = [
  "I2_S",
  "TQ1_0",
  "TQ2_0",
  "F32",
  "F16",
  "BF16",
];
/** Types the token embedding / output head may have. */
export const EMBEDDING_TYPES: readonly GgmlTypeName[] = [
  "F16",
  "F32",
  "BF16",
  "Q8_0",
  "Q6_K",
  "Q4_0",
];
export const NORM_TYPES: readonly GgmlTypeName[] = ["F32", "F16"];
