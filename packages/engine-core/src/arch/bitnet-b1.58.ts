/**
 * bitnet.cpp's BitNet b1.58 2B-4T architecture (`bitnet-b1.58`, also written `bitnet-25` in the
 * first upload and `bitnet-1.58` by one fork version): squared-ReLU gated FFN, sub-norms, NeoX
 * RoPE, GQA, tied F16 embeddings, I2_S weights with per-token int8 activations.
 * Paper: "BitNet b1.58 2B4T Technical Report" (arXiv:2504.12285).
 */

import { readHParams } from "../hparams";
import { bitnetGraph, bitnetTensors } from "./blocks";
import type { Architecture } from "./types";

export const bitnetB158: Architecture = {
  names: ["bitnet-b1.58", "bitnet-25", "bitnet-1.58"],
  description: "BitNet b1.58 2B-4T (bitnet.cpp): relu² FFN, I2_S",
  hparams(md, arch, options) {
    const vocabSize = md.getArrayLength("tokenizer.ggml.tokens") ?? 0;
    const hp = readHParams(md, arch, { ffnActivation: "relu2", vocabSize });
    return options.ffnActivation === undefined
      ? hp
      : { ...hp, ffnActivation: options.ffnActivation };
  },
  tensors: (hp) => bitnetTensors(hp, { scales: false }),
  graph: bitnetGraph,
};
