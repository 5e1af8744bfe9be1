/**
 * Mainline llama.cpp's `bitnet` architecture (1bitLLM bitnet_b1_58 models, and 2B-4T
 * checkpoints converted by mainline's converter): the same block as bitnet.cpp's but with a
 * SiLU-gated FFN (what llama.cpp computes for this arch), optional per-tensor `*.scale`
 * tensors, TQ1_0/TQ2_0 weights with Q8_K activations. A 2B-4T checkpoint in this arch needs
 * squared ReLU: pass `ffnActivation: "relu2"` (CLI `--ffn-act relu2`), or set
 * `bitnet.hidden_activation = "relu2"` in the file.
 * Paper: "The Era of 1-bit LLMs" (arXiv:2402.17764).
 */

import { readHParams } from "../hparams";
import { bitnetGraph, bitnetTensors } from "./blocks";
import type { Architecture } from "./types";

export const bitnet: Architecture = {
  names: ["bitnet"],
  description: "BitNet b1.58 as mainline llama.cpp runs it: SiLU FFN, TQ1_0/TQ2_0",
  hparams(md, arch, options) {
    const vocabSize = md.getArrayLength("tokenizer.ggml.tokens") ?? 0;
    const hp = readHParams(md, arch, { ffnActivation: "silu", vocabSize });
    return options.ffnActivation === undefined
      ? hp
      : { ...hp, ffnActivation: options.ffnActivation };
  },
  tensors: (hp) => bitnetTensors(hp, { scales: true }),
  graph: bitnetGraph,
};
