/**
 * A sequence's KV cache is one reservation of address space for the whole context, whose pages
 * come in as positions are first written (native/model.h, Sequence): it never moves. These tests
 * walk sequences across the 32-position key blocks and the lengths at which the cache used to be
 * reallocated and copied (64, 128, 256), and check that nothing written earlier is lost or
 * misplaced, that a fork carries its source's positions and nothing of its later ones, that a
 * reused cache starts clean, and that the addon refuses a position past the context.
 */
import { afterAll, describe, expect, it } from "vitest";
import { cleanup, cpuModel, SLOW_TEST_MS } from "../test/models";
import type { CpuModel } from "./backend";

afterAll(cleanup);

const CONTEXT = 320;
const TOP_K = 16;
/** Deterministic tokens of the fixtures' LLaMA-3 vocabulary (BOS first). */
const TOKENS: readonly number[] = [
  128000,
  ...Array.from({ length: 299 }, (_, i) => 1 + ((i * 7919 + 13) % 128000)),
];

type Top = { ids: Int32Array; logits: Float32Array };

/** The top-k rows of `tokens` fed to `seq` in steps of the given sizes. */
async function topRows(
  model: CpuModel,
  seq: number,
  tokens: readonly number[],
  sizes: readonly number[],
): Promise<Top[]> {
  const rows: Top[] = [];
  let at = 0;
  for (const size of sizes) {
    const chunk = tokens.slice(at, at + size);
    at += size;
    const { runs } = await model.step([
      { sequence: seq, tokens: chunk, logits: "all", reduce: { topK: TOP_K } },
    ]);
    const top = runs[0]!.top!;
    for (let r = 0; r < chunk.length; r++) {
      rows.push({
        ids: top.ids.slice(r * TOP_K, (r + 1) * TOP_K),
        logits: top.logits.slice(r * TOP_K, (r + 1) * TOP_K),
      });
    }
  }
  expect(at).toBe(tokens.length);
  return rows;
}

function expectSameRows(got: readonly Top[], want: readonly Top[], what: string): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    expect(got[i]!.ids, `${what}: position ${i}, ids`).toEqual(want[i]!.ids);
    // Bit for bit (Object.is per value): the same cache contents give the same floats.
    const differ = want[i]!.logits.filter((v, k) => !Object.is(v, got[i]!.logits[k])).length;
    expect(differ, `${what}: position ${i}, logits that differ`).toBe(0);
  }
}

/** Runs `use` on a fresh tiny-i2s model of `context` positions, disposed afterwards. */
async function withModel<T>(context: number, use: (model: CpuModel) => Promise<T>): Promise<T> {
  const model = await cpuModel("tiny-i2s", { threads: 2 }, context);
  try {
    return await use(model);
  } finally {
    await model.dispose();
  }
}

/** The top-k rows of `tokens` given to a new sequence in one step (the sequence freed after). */
async function oneStepRows(model: CpuModel, tokens: readonly number[]): Promise<Top[]> {
  const seq = model.createSequence();
  const rows = await topRows(model, seq, tokens, [tokens.length]);
  model.freeSequence(seq);
  return rows;
}

describe("the KV cache of a sequence", () => {
  it("keeps every position across key blocks and the old reallocation points: one token a step gives the rows of one long step", {
    timeout: SLOW_TEST_MS,
  }, async () => {
    await withModel(CONTEXT, async (model) => {
      const want = await oneStepRows(model, TOKENS);
      // A prompt of 20, then single tokens (and a few uneven steps around 64 and 256).
      const sizes = [
        20,
        ...Array<number>(40).fill(1),
        7,
        3,
        1,
        1,
        5,
        ...Array<number>(180).fill(1),
        9,
        4,
        30,
      ];
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(TOKENS.length);
      const stepped = model.createSequence();
      expectSameRows(await topRows(model, stepped, TOKENS, sizes), want, "stepped");
      const info = model.info();
      // Capacity follows the positions asked for, in whole 32-position key blocks.
      expect(info.kvAllocatedBytes).toBe(320 * info.kvBytesPerToken);
      model.freeSequence(stepped);
    });
  });

  it("forks: the copy holds its source's positions, and each goes on as a sequence given its own tokens in one step would", {
    timeout: SLOW_TEST_MS,
  }, async () => {
    await withModel(CONTEXT, async (model) => {
      const prefix = TOKENS.slice(0, 150);
      const tailA = TOKENS.slice(150, 200);
      const tailB = TOKENS.slice(200, 260);
      const wantA = (await oneStepRows(model, [...prefix, ...tailA])).slice(prefix.length);
      const wantB = (await oneStepRows(model, [...prefix, ...tailB])).slice(prefix.length);
      const source = model.createSequence();
      await topRows(model, source, prefix, [100, 50]);
      const before = model.info();
      const fork = model.forkSequence(source);
      expect(model.info().kvAllocatedBytes - before.kvAllocatedBytes).toBe(
        160 * before.kvBytesPerToken,
      );
      // The source first: what it writes past the fork point must not show in the fork.
      expectSameRows(
        await topRows(model, source, tailA, Array<number>(tailA.length).fill(1)),
        wantA,
        "source",
      );
      expectSameRows(
        await topRows(model, fork, tailB, [1, 1, 8, ...Array<number>(50).fill(1)]),
        wantB,
        "fork",
      );
      model.freeSequence(source);
      model.freeSequence(fork);
    });
  });

  it("reused after a long sequence, a cache gives a new one the rows of a fresh model", {
    timeout: SLOW_TEST_MS,
  }, async () => {
    const short = TOKENS.slice(0, 40);
    const sizes = [20, ...Array<number>(20).fill(1)];
    const want = await withModel(CONTEXT, (fresh) =>
      topRows(fresh, fresh.createSequence(), short, sizes),
    );
    await withModel(CONTEXT, async (model) => {
      await oneStepRows(model, TOKENS);
      expect(model.info().kvSpareBytes).toBe(320 * model.info().kvBytesPerToken);
      const again = model.createSequence();
      expectSameRows(await topRows(model, again, short, sizes), want, "reused");
      // It took the spare over: the long sequence's capacity, no fresh pages.
      expect(model.info().kvSpareBytes).toBe(0);
      expect(model.info().kvAllocatedBytes).toBe(320 * model.info().kvBytesPerToken);
    });
  });

  it("refuses a position past the context in the addon itself", {
    timeout: SLOW_TEST_MS,
  }, async () => {
    await withModel(64, async (model) => {
      model.native.createSequence(7);
      const vocab = model.description.hparams.vocabSize;
      const step = (position: number) =>
        model.native.step(
          Int32Array.of(791),
          Int32Array.of(7),
          Int32Array.of(position),
          Uint8Array.of(1),
          new Float32Array(vocab),
          new Int32Array(0),
          [],
        );
      await expect(step(64)).rejects.toThrow(/position beyond the model's context/);
      // The model still steps afterwards.
      await expect(step(63)).resolves.toBeUndefined();
    });
  });
});
