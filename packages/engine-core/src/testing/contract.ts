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
import type { BatchInvariance, CompiledModel, StepOutput } from "../backend";
import { argmaxRows, topKRows } from "../steps";

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

/**
 * Whether two logits arrays agree under a backend's declared invariance: identical bits, or
 * within `tolerance` everywhere with the same argmax in every row whose top two logits are more
 * than 2 × tolerance apart (where they are closer, either token is a fair greedy pick).
 */
export function agreeUnder(
  invariance: BatchInvariance,
  a: Float32Array,
  b: Float32Array,
  vocab: number,
): boolean {
  if (invariance === "bit-exact") {
    return sameBits(a, b);
  }
  if (a.length !== b.length) {
    return false;
  }
  const { tolerance } = invariance;
  for (let i = 0; i < a.length; i++) {
    if (!(Math.abs(a[i]! - b[i]!) <= tolerance)) {
      return false;
    }
  }
  const rows = a.length / vocab;
  const topA = topKRows(a, rows, vocab, 2);
  const argB = argmaxRows(b, rows, vocab);
  for (let r = 0; r < rows; r++) {
    const gap = topA.logits[2 * r]! - topA.logits[2 * r + 1]!;
    if (gap > 2 * tolerance && topA.ids[2 * r] !== argB[r]) {
      return false;
    }
  }
  return true;
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
  /**
   * What batched vs one-by-one results must satisfy (the backend's `batchInvariance`; default
   * "bit-exact", which the CPU and reference backends keep). GPU backends declare a tolerance.
   */
  readonly invariance?: BatchInvariance;
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
  const invariance = options.invariance ?? "bit-exact";
  const exact = invariance === "bit-exact" ? "bit for bit" : `within ${invariance.tolerance}`;
  describe(`backend contract: ${label}`, () => {
    let model: CompiledModel;
    const same = (a: Float32Array, b: Float32Array): boolean =>
      agreeUnder(invariance, a, b, model.description.hparams.vocabSize);

    it("loads", async () => {
      model = await load();
      expect(model.contextLength).toBe(contextLength);
    });

    it(`one-token decode equals the batched prompt, position by position, ${exact}`, async () => {
      expect(same(await logitsOneByOne(model, prompt), await logitsBatched(model, prompt))).toBe(
        true,
      );
    });

    it("decoding after a cached prefix equals recomputing everything without a cache", async () => {
      const vocab = model.description.hparams.vocabSize;
      const seq = model.createSequence();
      const cut = Math.floor(prompt.length / 2);
      await model.step([{ sequence: seq, tokens: prompt.slice(0, cut), logits: "none" }]);
      const cached = (await model.step([{ sequence: seq, tokens: prompt.slice(cut) }])).runs[0]!
        .logits;
      const fresh = await logitsBatched(model, prompt);
      expect(same(Float32Array.from(cached), fresh.subarray((prompt.length - 1) * vocab))).toBe(
        true,
      );
      model.freeSequence(seq);
    });

    it(`a batch of two sequences equals each sequence alone, ${exact}`, async () => {
      const alone1 = await logitsBatched(model, prompt);
      const alone2 = await logitsBatched(model, other);
      const a = model.createSequence();
      const b = model.createSequence();
      const { runs } = await model.step([
        { sequence: a, tokens: prompt, logits: "all" },
        { sequence: b, tokens: other, logits: "all" },
      ]);
      expect(same(Float32Array.from(runs[0]!.logits), alone1)).toBe(true);
      expect(same(Float32Array.from(runs[1]!.logits), alone2)).toBe(true);
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
      expect(same(Float32Array.from(next1), Float32Array.from(next2))).toBe(true);
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
      expect(same(Float32Array.from(a), Float32Array.from(b))).toBe(true);
      model.truncateSequence(seq, 3);
      expect(model.sequenceLength(seq)).toBe(3);
      const again = (await model.step([{ sequence: seq, tokens: prompt.slice(3) }])).runs[0]!
        .logits;
      const full = await logitsBatched(model, prompt);
      expect(same(Float32Array.from(again), full.subarray((prompt.length - 1) * vocab))).toBe(true);
      model.freeSequence(seq);
      model.freeSequence(fork);
      expect(() => model.sequenceLength(seq)).toThrowError(
        expect.objectContaining({ code: "ENGINE_BAD_SEQUENCE" }),
      );
      expect(model.sequenceCount).toBe(0);
    });

    it("returns argmax and top-k reductions equal to reducing the full logits", async () => {
      const vocab = model.description.hparams.vocabSize;
      const full = await logitsBatched(model, prompt);
      const rows = prompt.length;
      const run = async (reduce: "argmax" | { topK: number }) => {
        const seq = model.createSequence();
        const { runs } = await model.step([
          { sequence: seq, tokens: prompt, logits: "all", reduce },
        ]);
        model.freeSequence(seq);
        return runs[0]!;
      };
      const arg = await run("argmax");
      expect(arg.rows).toBe(rows);
      expect(arg.logits.length).toBe(0);
      const want = argmaxRows(full, rows, vocab);
      const top = await run({ topK: 5 });
      const wantTop = topKRows(full, rows, vocab, 5);
      if (invariance === "bit-exact") {
        expect([...arg.argmax!]).toEqual([...want]);
        expect([...top.top!.ids]).toEqual([...wantTop.ids]);
        expect(sameBits(top.top!.logits, wantTop.logits)).toBe(true);
      } else {
        for (let r = 0; r < rows; r++) {
          const picked = full[r * vocab + arg.argmax![r]!]!;
          expect(picked).toBeGreaterThanOrEqual(
            full[r * vocab + want[r]!]! - 2 * invariance.tolerance,
          );
        }
        expect(top.top!.k).toBe(5);
      }
      expect([...top.argmax!]).toEqual(Array.from({ length: rows }, (_, r) => top.top!.ids[r * 5]));
      const seq = model.createSequence();
      await expect(
        model.step([{ sequence: seq, tokens: [1], reduce: { topK: 0 } }]),
      ).rejects.toMatchObject({ code: "ENGINE_BAD_OPTION" });
      expect(model.sequenceLength(seq)).toBe(0);
      model.freeSequence(seq);
    });

    it("steps issued together run in order, each caller getting its own result or error", async () => {
      const a = model.createSequence();
      const b = model.createSequence();
      const c = model.createSequence();
      const outcomes = await Promise.allSettled([
        model.step([{ sequence: a, tokens: prompt }]),
        model.step([{ sequence: b, tokens: [1, 999_999_999] }]),
        model.step([{ sequence: c, tokens: prompt }]),
        model.step([{ sequence: a, tokens: [1234] }]),
      ]);
      expect(outcomes.map((o) => o.status)).toEqual([
        "fulfilled",
        "rejected",
        "fulfilled",
        "fulfilled",
      ]);
      expect((outcomes[1] as PromiseRejectedResult).reason).toMatchObject({
        code: "ENGINE_BAD_TOKEN",
      });
      const logitsOf = (i: number) =>
        Float32Array.from(
          (outcomes[i] as PromiseFulfilledResult<StepOutput>).value.runs[0]!.logits,
        );
      expect(same(logitsOf(0), logitsOf(2))).toBe(true);
      expect(model.sequenceLength(a)).toBe(prompt.length + 1);
      expect(model.sequenceLength(b)).toBe(0);
      for (const s of [a, b, c]) {
        model.freeSequence(s);
      }
    });

    it("reports its capacity: KV bytes per token, a budget, live sequences", async () => {
      const before = model.capacity();
      expect(before.kvBytesPerToken).toBeGreaterThan(0);
      expect(before.kvBudgetBytes).toBeGreaterThan(0);
      expect(before.contextLength).toBe(contextLength);
      const seq = model.createSequence();
      await model.step([{ sequence: seq, tokens: prompt, logits: "none" }]);
      const after = model.capacity();
      expect(after.liveSequences).toBe(before.liveSequences + 1);
      expect(after.kvUsedBytes).toBeGreaterThanOrEqual(
        before.kvUsedBytes + prompt.length * after.kvBytesPerToken,
      );
      model.freeSequence(seq);
      expect(model.capacity().liveSequences).toBe(before.liveSequences);
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
