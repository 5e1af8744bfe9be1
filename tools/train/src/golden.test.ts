/**
 * The engine against PyTorch on a trained BitNet, without PyTorch: golden/cpu holds a model
 * trained by bitnet_train on a CPU, converted by `bitnet convert`, and what the trainer's float32
 * quantized forward computed on held-out text (bitnet_train.evaluate). Every backend here must
 * tokenize as SentencePiece does, agree with PyTorch's logits and reproduce its perplexity.
 */
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { compareWithPytorch, formatComparison, readGolden } from "./compare";
import { TRAIN_DIR } from "./python";

const GOLDEN = path.join(TRAIN_DIR, "golden", "cpu");
const MODEL = path.join(GOLDEN, "model-i2_s.gguf");

describe("engine vs PyTorch on the CPU-trained model (committed golden data)", () => {
  const data = readGolden(GOLDEN);

  for (const backend of ["cpu", "reference"] as const) {
    it(`${backend}: SentencePiece tokenization, PyTorch's logits and perplexity`, async () => {
      const r = await compareWithPytorch(MODEL, data, { backend, threads: 2 });
      console.log(formatComparison([r]));
      expect(r.firstTokenizerMismatch).toBeUndefined();
      expect(r.tokenizedIdentical).toBe(data.golden.tokenized.length);
      expect(r.logits.positions).toBe(data.golden.windows.reduce((n, w) => n + w.length, 0));
      expect(r.logits.top1Agreement).toBeGreaterThanOrEqual(0.97);
      expect(r.logits.meanKl).toBeLessThan(1e-4);
      expect(r.perplexityRelativeDifference).toBeLessThan(0.001);
    });
  }

  it("the comparison catches logits that are off by one position", async () => {
    const vocab = data.golden.vocab_size;
    const shifted = new Float32Array(data.logits.length);
    shifted.set(data.logits.subarray(vocab));
    shifted.set(data.logits.subarray(0, vocab), data.logits.length - vocab);
    const r = await compareWithPytorch(MODEL, { ...data, logits: shifted }, { backend: "cpu" });
    expect(r.logits.top1Agreement).toBeLessThan(0.5);
    expect(r.logits.meanKl).toBeGreaterThan(0.1);
  });
});
