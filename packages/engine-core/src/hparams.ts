/** Hyperparameters every BitNet architecture shares, read from GGUF metadata. */
import type { GgufMetadata } from "@bitnet-ts/gguf";
import { EngineError, EngineErrorCode } from "./errors";

export type FfnActivation = "relu2" | "silu";

export interface HParams {
  /** The `general.architecture` string of the file. */
  readonly arch: string;
  readonly nEmbd: number;
  readonly nLayer: number;
  readonly nFf: number;
  readonly nHead: number;
  readonly nHeadKv: number;
  readonly headDim: number;
  /** Dimensions of each head that RoPE rotates (the whole head for BitNet). */
  readonly nRot: number;
  readonly contextLength: number;
  readonly ropeFreqBase: number;
  readonly rmsEps: number;
  readonly vocabSize: number;
  readonly ffnActivation: FfnActivation;
}

/** Reads the hyperparameters under `<arch>.…`, with clear errors for missing or impossible values. */
export function readHParams(
  md: GgufMetadata,
  arch: string,
  defaults: { ffnActivation: FfnActivation; vocabSize: number },
): HParams {
  const key = (name: string) => `${arch}.${name}`;
  const count = (name: string): number => {
    const value = md.getCount(key(name));
    if (value === undefined) {
      throw new EngineError(
        EngineErrorCode.BAD_HPARAMS,
        `could not load the model - hyperparameter "${key(name)}" is missing from the file.\nEvery ${arch} model needs it; the file was not converted correctly.`,
      );
    }
    if (value <= 0) {
      throw new EngineError(
        EngineErrorCode.BAD_HPARAMS,
        `could not load the model - "${key(name)}" is ${value}; it must be positive.`,
      );
    }
    return value;
  };
  const nEmbd = count("embedding_length");
  const nLayer = count("block_count");
  const nFf = count("feed_forward_length");
  const nHead = count("attention.head_count");
  const nHeadKv = md.getCount(key("attention.head_count_kv")) ?? nHead;
  const contextLength = count("context_length");
  if (nEmbd % nHead !== 0) {
    throw new EngineError(
      EngineErrorCode.BAD_HPARAMS,
      `could not load the model - embedding_length ${nEmbd} is not a multiple of head_count ${nHead}.`,
    );
  }
  if (nHeadKv <= 0 || nHead % nHeadKv !== 0) {
    throw new EngineError(
      EngineErrorCode.BAD_HPARAMS,
      `could not load the model - head_count ${nHead} is not a multiple of head_count_kv ${nHeadKv}.`,
    );
  }
  const headDim = nEmbd / nHead;
  const nRot = md.getCount(key("rope.dimension_count")) ?? headDim;
  if (nRot > headDim || nRot % 2 !== 0) {
    throw new EngineError(
      EngineErrorCode.BAD_HPARAMS,
      `could not load the model - rope.dimension_count ${nRot} must be even and at most the head size ${headDim}.`,
    );
  }
  const eps = md.getNumber(key("attention.layer_norm_rms_epsilon"));
  if (eps === undefined || !(eps > 0)) {
    throw new EngineError(
      EngineErrorCode.BAD_HPARAMS,
      `could not load the model - "${key("attention.layer_norm_rms_epsilon")}" is ${eps === undefined ? "missing" : eps}; a positive RMSNorm epsilon is required.`,
    );
  }
  const ropeFreqBase = md.getNumber(key("rope.freq_base")) ?? 10000;
  const activation = md.getString(key("hidden_activation")) ?? md.getString(key("hidden_act"));
  return {
    arch,
    nEmbd,
    nLayer,
    nFf,
    nHead,
    nHeadKv,
    headDim,
    nRot,
    contextLength,
    ropeFreqBase,
    rmsEps: eps,
    vocabSize: md.getCount(key("vocab_size")) ?? defaults.vocabSize,
    ffnActivation:
      activation === "relu2" || activation === "relu_squared"
        ? "relu2"
        : activation === "silu"
          ? "silu"
          : defaults.ffnActivation,
  };
}
