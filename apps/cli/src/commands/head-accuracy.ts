/**
 * What a quantized output head (--head q8_0|q6_k) costs in accuracy, measured by `bitnet bench`
 * in the same run as its speed: the file's head and the quantized one score the same text, one
 * step with logits at every position, and each position's next-token distributions are compared
 * (top-1 agreement, KL(file ‖ quantized), cosine of the logits).
 */
import { comparePosition } from "@bitnet-ts/crossval";
import type { CompiledModel } from "@bitnet-ts/engine-core";
import { Tokenizer } from "@bitnet-ts/tokenizers";

/** English prose with numbers, names and code-like text: the positions the heads are compared on. */
export const HEAD_ACCURACY_TEXT: string = [
  "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg",
  "combined movable metal type, oil-based ink and a wooden screw press into a system that could",
  "produce books faster than any scribe. Within fifty years, presses operated in more than 250",
  "European cities, and roughly twenty million volumes had been printed. Prices fell, literacy",
  "rose, and ideas travelled further than ever before. Scholars argue about how much of the",
  "Renaissance, the Reformation and the Scientific Revolution the press made possible; few doubt",
  "that it changed who could read, what they read, and how quickly arguments spread.",
  "In Python, the expression sum(x * x for x in range(10)) evaluates to 285, and",
  'print("hello, world") writes a greeting. Q: What is the capital of France? A: Paris.',
].join(" ");

export interface HeadAccuracy {
  /** The quantized head that ran (q8_0 or q6_k). */
  readonly head: string;
  /** The type of the file's head it is compared with (e.g. F16). */
  readonly reference: string;
  readonly positions: number;
  /** Share of positions whose most likely next token is the same. */
  readonly top1: number;
  /** KL(file head ‖ quantized head) in nats: mean and largest over the positions. */
  readonly kl_mean: number;
  readonly kl_max: number;
  /** Smallest cosine similarity of the two logit rows. */
  readonly cosine_min: number;
}

/** The text's tokens (or seeded token ids when the file has no tokenizer), at most `max`. */
function accuracyTokens(model: CompiledModel, max: number): number[] {
  let tokens: number[];
  try {
    tokens = [...Tokenizer.fromGguf(model.description.file.metadata).encode(HEAD_ACCURACY_TEXT)];
  } catch {
    tokens = [];
    let state = 12345;
    for (let i = 0; i < max; i++) {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      tokens.push(state % Math.min(model.description.hparams.vocabSize, 100_000));
    }
  }
  return tokens.slice(0, max);
}

async function allLogits(model: CompiledModel, tokens: readonly number[]): Promise<Float32Array> {
  const seq = model.createSequence();
  try {
    const { runs } = await model.step([{ sequence: seq, tokens, logits: "all" }]);
    return runs[0]!.logits;
  } finally {
    model.freeSequence(seq);
  }
}

/**
 * Loads `modelPath` again with the file's own head (the backend options without `head`) and
 * compares its logits with `quantized`'s on the accuracy text.
 */
export async function measureHeadAccuracy(
  quantized: CompiledModel,
  modelPath: string,
  head: string,
  load: (path: string, contextLength: number) => Promise<CompiledModel>,
): Promise<HeadAccuracy> {
  const contextLength = Math.min(256, quantized.contextLength);
  const tokens = accuracyTokens(quantized, contextLength);
  const reference = await load(modelPath, contextLength);
  try {
    const vocab = quantized.description.hparams.vocabSize;
    const want = await allLogits(reference, tokens);
    const got = await allLogits(quantized, tokens);
    let agree = 0;
    let klSum = 0;
    let klMax = 0;
    let cosineMin = 1;
    for (let t = 0; t < tokens.length; t++) {
      const m = comparePosition(want, t * vocab, got, t * vocab, vocab);
      agree += m.top1 ? 1 : 0;
      klSum += m.kl;
      klMax = Math.max(klMax, m.kl);
      cosineMin = Math.min(cosineMin, m.cosine);
    }
    const file = quantized.description.file;
    const headTensor = file.findTensor("output.weight") ?? file.findTensor("token_embd.weight");
    return {
      head,
      reference: headTensor?.type.name ?? "unknown",
      positions: tokens.length,
      top1: agree / tokens.length,
      kl_mean: klSum / tokens.length,
      kl_max: klMax,
      cosine_min: cosineMin,
    };
  } finally {
    await reference.dispose();
  }
}

/** One line for the bench table's footer. */
export function formatHeadAccuracy(a: HeadAccuracy): string {
  return `head ${a.head} vs the file's ${a.reference} head, ${a.positions} positions of a fixed text: top-1 agreement ${(100 * a.top1).toFixed(1)}%, KL mean ${a.kl_mean.toExponential(2)} nats (max ${a.kl_max.toExponential(2)}), logits cosine ≥ ${a.cosine_min.toFixed(6)}`;
}
