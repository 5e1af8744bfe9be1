/**
 * The contract every architecture and backend honours (after mlx-lm's model_test_runner):
 * one-token decoding equals the same position of a batched prompt bit for bit, with and
 * without the KV cache, and a batch of two sequences equals each sequence alone bit for bit.
 * Batch invariance is what makes served outputs independent of load.
 */
import { afterAll, describe, expect, it } from "vitest";
import { cleanup, fixture, MICRO, sameBits } from "../test/models";
import type { CompiledModel } from "./backend";
import { loadModel } from "./load";
import type { BackendName } from "./select";

afterAll(cleanup);

const PROMPT = [128000, 791, 6864, 315, 9822, 374, 12366, 13];
const OTHER = [128000, 5451, 5304, 264, 892, 11];

async function logitsBatched(model: CompiledModel, tokens: number[]): Promise<Float32Array> {
  const seq = model.createSequence();
  const { runs } = await model.step([{ sequence: seq, tokens, logits: "all" }]);
  model.freeSequence(seq);
  return Float32Array.from(runs[0]!.logits);
}

async function logitsOneByOne(model: CompiledModel, tokens: number[]): Promise<Float32Array> {
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

const CASES: [string, BackendName][] = [
  ["tiny-i2s", "reference"],
  ["tiny-tq2", "reference"],
  ["tiny-tq1", "reference"],
  [MICRO.name, "reference"],
  ["tiny-i2s", "reference-f64"],
];

describe.each(CASES)("architecture contract: %s on %s", (name, backend) => {
  let model: CompiledModel;

  it("loads", async () => {
    model = await loadModel(await fixture(name), { backend, contextLength: 64 });
    expect(model.backendName).toBe(backend);
  });

  it("one-token decode equals the batched prompt, position by position, bit for bit", async () => {
    expect(sameBits(await logitsOneByOne(model, PROMPT), await logitsBatched(model, PROMPT))).toBe(
      true,
    );
  });

  it("decoding after a cached prefix equals recomputing everything without a cache", async () => {
    const vocab = model.description.hparams.vocabSize;
    const seq = model.createSequence();
    await model.step([{ sequence: seq, tokens: PROMPT.slice(0, 5), logits: "none" }]);
    const cached = (await model.step([{ sequence: seq, tokens: PROMPT.slice(5) }])).runs[0]!.logits;
    const fresh = await logitsBatched(model, PROMPT);
    expect(sameBits(Float32Array.from(cached), fresh.subarray((PROMPT.length - 1) * vocab))).toBe(
      true,
    );
    model.freeSequence(seq);
  });

  it("a batch of two sequences equals each sequence alone, bit for bit", async () => {
    const alone1 = await logitsBatched(model, PROMPT);
    const alone2 = await logitsBatched(model, OTHER);
    const a = model.createSequence();
    const b = model.createSequence();
    const { runs } = await model.step([
      { sequence: a, tokens: PROMPT, logits: "all" },
      { sequence: b, tokens: OTHER, logits: "all" },
    ]);
    expect(sameBits(Float32Array.from(runs[0]!.logits), alone1)).toBe(true);
    expect(sameBits(Float32Array.from(runs[1]!.logits), alone2)).toBe(true);
    // Mixed: one sequence decoding while the other prefills.
    const next1 = (
      await model.step([
        { sequence: a, tokens: [1234] },
        { sequence: model.createSequence(), tokens: OTHER, logits: "none" },
      ])
    ).runs[0]!.logits;
    const solo = model.createSequence();
    await model.step([{ sequence: solo, tokens: PROMPT, logits: "none" }]);
    const next2 = (await model.step([{ sequence: solo, tokens: [1234] }])).runs[0]!.logits;
    expect(sameBits(Float32Array.from(next1), Float32Array.from(next2))).toBe(true);
  });

  it("forks, truncates and frees sequences", async () => {
    const vocab = model.description.hparams.vocabSize;
    const seq = model.createSequence();
    await model.step([{ sequence: seq, tokens: PROMPT.slice(0, 6), logits: "none" }]);
    const fork = model.forkSequence(seq);
    expect(model.sequenceLength(fork)).toBe(6);
    const a = (await model.step([{ sequence: seq, tokens: PROMPT.slice(6) }])).runs[0]!.logits;
    const b = (await model.step([{ sequence: fork, tokens: PROMPT.slice(6) }])).runs[0]!.logits;
    expect(sameBits(Float32Array.from(a), Float32Array.from(b))).toBe(true);
    model.truncateSequence(seq, 3);
    expect(model.sequenceLength(seq)).toBe(3);
    const again = (await model.step([{ sequence: seq, tokens: PROMPT.slice(3) }])).runs[0]!.logits;
    const full = await logitsBatched(model, PROMPT);
    expect(sameBits(Float32Array.from(again), full.subarray((PROMPT.length - 1) * vocab))).toBe(
      true,
    );
    model.freeSequence(seq);
    expect(() => model.sequenceLength(seq)).toThrowError(
      expect.objectContaining({ code: "ENGINE_BAD_SEQUENCE" }),
    );
  });

  it("rejects bad steps before changing any state", async () => {
    const seq = model.createSequence();
    const before = model.sequenceLength(seq);
    await expect(model.step([{ sequence: seq, tokens: [1, 999_999_999] }])).rejects.toMatchObject({
      code: "ENGINE_BAD_TOKEN",
    });
    await expect(model.step([{ sequence: 12345, tokens: [1] }])).rejects.toMatchObject({
      code: "ENGINE_BAD_SEQUENCE",
    });
    await expect(
      model.step([{ sequence: seq, tokens: new Array(65).fill(1) }]),
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
  });
});
