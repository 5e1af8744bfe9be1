/**
 * The contract every backend honours, as a reusable vitest suite (after mlx-lm's
 * model_test_runner): one-token decoding equals the same position of a batched prompt bit for
 * bit, with and without the KV cache; a batch of sequences equals each sequence alone bit for
 * bit (batch invariance is what makes served outputs independent of load); forks, truncation and
 * frees behave; bad steps are rejected before any state changes.
 *
 * @example
 * import { describeBackendContract } from "@bitnet-ts/engine-core/testing";
 * describeBackendContract("tiny-i2s on my backend", () => myBackend.compile(description));
 */
import { describe, expect, it } from "vitest";
import type { CompiledModel } from "../backend";

/** A prompt and a second one, valid in the LLaMA-3 vocabulary of the fixtures. */
export const CONTRACT_PROMPT: readonly number[] = [128000, 791, 6864, 315, 9822, 374, 12366, 13];
export const CONTRACT_OTHER: readonly number[] = [128000, 5451, 5304, 264, 892, 11];

/** Bitwise equality of two float arrays (NaN-safe, distinguishes -0). */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  return (
    a.length === b.length &&
    Buffer.compare(
      Buffer.from(a.buffer, a.byteOffset, a.byteLength),
      Buffer.from(b.buffer, b.byteOffset, b.byteLength),
    ) === 0
  );
}

/** Logits of every position of `tokens`, run as one batched step in a fresh sequence. */
export async function logitsBatched(
  model: CompiledModel,
  tokens: readonly number[],
): Promise<Float32Array> {
  const seq = model.createSequence();
  const { runs } = await model.step([{ sequence: seq, tokens, logits: "all" }]);
  model.freeSequence(seq);
  return Float32Array.from(runs[0]!.logits);
}

/** Logits of every position of `tokens`, one decode step per token. */
export async function logitsOneByOne(
  model: CompiledModel,
  tokens: readonly number[],
): Promise<Float32Array> {
  const vocab = model.description.hparams.vocabSize;
  const out = new Float32Array(tokens.length * vocab);
  const seq = model.createSequence();
  for (const [i, t] of tokens.entries()) {
    const { runs } = await model.step([{ sequence: seq, tokens: [t] }]);
    out.set(runs[0]!.logits, i * vocab);
  }
  model.freeSequence(seq);
  return out;
}

export interface ContractOptions {
  /** Prompt to use (default CONTRACT_PROMPT); lengths ≥ 16 exercise batched-GEMM paths. */
  readonly prompt?: readonly number[];
  readonly other?: readonly number[];
  /** The context length the model was compiled with (default 64). */
  readonly contextLength?: number;
}

/**
 * Registers the contract suite for one compiled model. `load` is called once; the model is
 * disposed by the last test.
 */
export function describeBackendContract(
  label: string,
  load: () => Promise<CompiledModel>,
  options: ContractOptions = {},
): void {
  const prompt = options.prompt ?? CONTRACT_PROMPT;
  const other = options.other ?? CONTRACT_OTHER;
  const contextLength = options.contextLength ?? 64;
  describe(`backend contract: ${label}`, () => {
    let model: CompiledModel;

    it("loads", async () => {
      model = await load();
      expect(model.contextLength).toBe(contextLength);
    });

    it("one-token decode equals the batched prompt, position by position, bit for bit", async () => {
      expect(
        sameBits(await logitsOneByOne(model, prompt), await logitsBatched(model, prompt)),
      ).toBe(true);
    });

    it("decoding after a cached prefix equals recomputing everything without a cache", async () => {
      const vocab = model.description.hparams.vocabSize;
      const seq = model.createSequence();
      const cut = Math.floor(prompt.length / 2);
      await model.step([{ sequence: seq, tokens: prompt.slice(0, cut), logits: "none" }]);
      const cached = (await model.step([{ sequence: seq, tokens: prompt.slice(cut) }])).runs[0]!
        .logits;
      const fresh = await logitsBatched(model, prompt);
      expect(sameBits(Float32Array.from(cached), fresh.subarray((prompt.length - 1) * vocab))).toBe(
        true,
      );
      model.freeSequence(seq);
    });

    it("a batch of two sequences equals each sequence alone, bit for bit", async () => {
      const alone1 = await logitsBatched(model, prompt);
      const alone2 = await logitsBatched(model, other);
      const a = model.createSequence();
      const b = model.createSequence();
      const { runs } = await model.step([
        { sequence: a, tokens: prompt, logits: "all" },
        { sequence: b, tokens: other, logits: "all" },
      ]);
      expect(sameBits(Float32Array.from(runs[0]!.logits), alone1)).toBe(true);
      expect(sameBits(Float32Array.from(runs[1]!.logits), alone2)).toBe(true);
      // Mixed: one sequence decoding while another prefills.
      const prefilling = model.createSequence();
      const next1 = (
        await model.step([
          { sequence: a, tokens: [1234] },
          { sequence: prefilling, tokens: other, logits: "none" },
        ])
      ).runs[0]!.logits;
      const solo = model.createSequence();
      await model.step([{ sequence: solo, tokens: prompt, logits: "none" }]);
      const next2 = (await model.step([{ sequence: solo, tokens: [1234] }])).runs[0]!.logits;
      expect(sameBits(Float32Array.from(next1), Float32Array.from(next2))).toBe(true);
      for (const s of [a, b, prefilling, solo]) {
        model.freeSequence(s);
      }
    });

    it("forks, truncates and frees sequences", async () => {
      const vocab = model.description.hparams.vocabSize;
      const cut = Math.floor((prompt.length * 3) / 4);
      const seq = model.createSequence();
      await model.step([{ sequence: seq, tokens: prompt.slice(0, cut), logits: "none" }]);
      const fork = model.forkSequence(seq);
      expect(model.sequenceLength(fork)).toBe(cut);
      const a = (await model.step([{ sequence: seq, tokens: prompt.slice(cut) }])).runs[0]!.logits;
      const b = (await model.step([{ sequence: fork, tokens: prompt.slice(cut) }])).runs[0]!.logits;
      expect(sameBits(Float32Array.from(a), Float32Array.from(b))).toBe(true);
      model.truncateSequence(seq, 3);
      expect(model.sequenceLength(seq)).toBe(3);
      const again = (await model.step([{ sequence: seq, tokens: prompt.slice(3) }])).runs[0]!
        .logits;
      const full = await logitsBatched(model, prompt);
      expect(sameBits(Float32Array.from(again), full.subarray((prompt.length - 1) * vocab))).toBe(
        true,
      );
      model.freeSequence(seq);
      model.freeSequence(fork);
      expect(() => model.sequenceLength(seq)).toThrowError(
        expect.objectContaining({ code: "ENGINE_BAD_SEQUENCE" }),
      );
      expect(model.sequenceCount).toBe(0);
    });

    it("rejects bad steps before changing any state", async () => {
      const seq = model.createSequence();
      const before = model.sequenceLength(seq);
      await expect(model.step([{ sequence: seq, tokens: [1, 999_999_999] }])).rejects.toMatchObject(
        {
          code: "ENGINE_BAD_TOKEN",
        },
      );
      await expect(model.step([{ sequence: seq, tokens: [1.5] }])).rejects.toMatchObject({
        code: "ENGINE_BAD_TOKEN",
      });
      await expect(model.step([{ sequence: 12345, tokens: [1] }])).rejects.toMatchObject({
        code: "ENGINE_BAD_SEQUENCE",
      });
      await expect(
        model.step([{ sequence: seq, tokens: new Array(contextLength + 1).fill(1) }]),
      ).rejects.toMatchObject({ code: "ENGINE_CONTEXT_FULL" });
      await expect(
        model.step([
          { sequence: seq, tokens: [1] },
          { sequence: seq, tokens: [2] },
        ]),
      ).rejects.toMatchObject({ code: "ENGINE_BAD_SEQUENCE" });
      expect(model.sequenceLength(seq)).toBe(before);
      model.freeSequence(seq);
      await model.dispose();
      await expect(model.step([{ sequence: 0, tokens: [1] }])).rejects.toMatchObject({
        code: "ENGINE_DISPOSED",
      });
    });
  });
}
