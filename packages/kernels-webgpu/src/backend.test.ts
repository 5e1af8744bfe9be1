/**
 * The WebGPU backend end to end, on whatever adapter the machine has (lavapipe in CI): the backend
 * contract for every architecture, the pinned golden greedy tokens, agreement with the CPU
 * reference logits, GPU-side reductions against the host's, paged KV forks, memory accounting
 * and its failure modes.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import {
  argmaxRows,
  EngineErrorCode,
  loadModel,
  readModelDescription,
  topKRows,
} from "@bitnet-ts/engine-core";
import {
  describeBackendContract,
  greedyTokens,
  logitsBatched,
} from "@bitnet-ts/engine-core/testing";
import { Tokenizer } from "@bitnet-ts/tokenizers";
import { afterAll, describe, expect, it } from "vitest";
import { backend, cleanup, fixture, gpuModel, LONG_PROMPT, withEmbedding } from "../test/models";
import { GPU_TOP_K_MAX, WebGpuBackend } from "./backend";
import { KV_PAGE } from "./wgsl";

afterAll(cleanup);

const OTHER = [128000, 5451, 5304, 264, 892, 11, 358, 1093, 279, 16053, 5679, 13];

describe("the adapter", () => {
  it("comes up (CI: lavapipe) and describes itself", async () => {
    const be = await backend();
    const d = be.describe();
    expect(d.device.length).toBeGreaterThan(0);
    expect(d.details["maxStorageBufferBindingSize"]).toBeGreaterThan(0);
    if (process.env["CI"] !== undefined) {
      expect(d.device).toMatch(/llvmpipe/);
    }
  });
});

for (const name of ["tiny-i2s", "tiny-tq2", "tiny-tq1"]) {
  describeBackendContract(`${name} on webgpu`, () => gpuModel(name), {
    prompt: LONG_PROMPT,
    other: OTHER,
    invariance: { tolerance: 1e-4 },
  });
}

const golden = JSON.parse(
  fs.readFileSync(
    path.resolve(import.meta.dirname, "../../../fixtures/golden-greedy.json"),
    "utf8",
  ),
) as { models: Record<string, Record<string, number[]>> };

describe("golden greedy tokens", () => {
  for (const name of ["tiny-i2s", "tiny-tq2", "tiny-tq1"]) {
    it(`${name}: the pinned tokens, argmax reduced on the GPU`, { timeout: 300_000 }, async () => {
      const model = await gpuModel(name);
      const tokenizer = Tokenizer.fromGguf(model.description.file.metadata);
      for (const [prompt, expected] of Object.entries(golden.models[name]!)) {
        const tokens = await greedyTokens(model, tokenizer.encode(prompt), expected.length);
        expect(tokens, `${name}: ${prompt}`).toEqual(expected);
      }
      await model.dispose();
    });
  }
});

describe("agreement with the reference backend", () => {
  it.each(["tiny-i2s", "tiny-tq2", "tiny-tq1"])(
    "%s: every position's logits within 1e-3 of the reference, same argmax",
    { timeout: 300_000 },
    async (name) => {
      const reference = await loadModel(await fixture(name), {
        backend: "reference",
        contextLength: 64,
      });
      const gpu = await gpuModel(name);
      const a = await logitsBatched(reference, LONG_PROMPT);
      const b = await logitsBatched(gpu, LONG_PROMPT);
      const vocab = gpu.description.hparams.vocabSize;
      let worst = 0;
      for (let i = 0; i < a.length; i++) {
        worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
      }
      expect(worst).toBeLessThan(1e-3);
      expect([...argmaxRows(b, LONG_PROMPT.length, vocab)]).toEqual([
        ...argmaxRows(a, LONG_PROMPT.length, vocab),
      ]);
      await reference.dispose();
      await gpu.dispose();
    },
  );
});

describe("heads and embeddings in other types", () => {
  it.each(["F32", "BF16", "Q8_0", "Q6_K"] as const)(
    "%s: dequantized like the reference, logits within 1e-3 of it, same argmax",
    { timeout: 300_000 },
    async (type) => {
      const file = await withEmbedding("tiny-tq2", type);
      const reference = await loadModel(file, { backend: "reference", contextLength: 64 });
      const gpu = await (await backend()).compile(await readModelDescription(file), {
        contextLength: 64,
      });
      const prompt = LONG_PROMPT.slice(0, 8);
      const a = await logitsBatched(reference, prompt);
      const b = await logitsBatched(gpu, prompt);
      let worst = 0;
      for (let i = 0; i < a.length; i++) {
        worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
      }
      expect(worst).toBeLessThan(1e-3);
      const vocab = gpu.description.hparams.vocabSize;
      expect([...argmaxRows(b, prompt.length, vocab)]).toEqual([
        ...argmaxRows(a, prompt.length, vocab),
      ]);
      expect(
        [...gpu.kernelCounts().keys()].some((id) => id.includes(`.output.${type.toLowerCase()}.`)),
      ).toBe(true);
      await reference.dispose();
      await gpu.dispose();
    },
  );
});

describe("logits reductions on the GPU", () => {
  it.each([true, false])(
    "argmax and top-k equal the host's reductions of the same rows; large k falls back to the host (subgroups: %s)",
    {
      timeout: 300_000,
    },
    async (subgroups) => {
      const model = await gpuModel("tiny-i2s", 64, { subgroups });
      expect(model.subgroups).toBe(subgroups);
      const vocab = model.description.hparams.vocabSize;
      const full = await logitsBatched(model, LONG_PROMPT);
      const rows = LONG_PROMPT.length;
      for (const reduce of [
        "argmax",
        { topK: 5 },
        { topK: GPU_TOP_K_MAX },
        { topK: 100 },
      ] as const) {
        const seq = model.createSequence();
        const { runs } = await model.step([
          { sequence: seq, tokens: LONG_PROMPT, logits: "all", reduce },
        ]);
        model.freeSequence(seq);
        const run = runs[0]!;
        expect(run.logits.length).toBe(0);
        expect([...run.argmax!]).toEqual([...argmaxRows(full, rows, vocab)]);
        if (reduce !== "argmax") {
          const host = topKRows(full, rows, vocab, reduce.topK);
          expect([...run.top!.ids]).toEqual([...host.ids]);
          expect([...run.top!.logits]).toEqual([...host.logits]);
        }
      }
      await model.dispose();
    },
  );

  it("mixes runs that want full rows, argmax and top-k in one step", {
    timeout: 300_000,
  }, async () => {
    const model = await gpuModel("tiny-tq2");
    const vocab = model.description.hparams.vocabSize;
    const ids = [model.createSequence(), model.createSequence(), model.createSequence()];
    const prompt = LONG_PROMPT.slice(0, 6);
    const { runs } = await model.step([
      { sequence: ids[0]!, tokens: prompt },
      { sequence: ids[1]!, tokens: prompt, reduce: "argmax" },
      { sequence: ids[2]!, tokens: prompt, reduce: { topK: 3 } },
    ]);
    expect(runs[0]!.logits.length).toBe(vocab);
    const best = argmaxRows(runs[0]!.logits, 1, vocab)[0];
    expect(runs[1]!.argmax![0]).toBe(best);
    expect(runs[2]!.top!.ids[0]).toBe(best);
    await model.dispose();
  });
});

describe("the paged KV cache", () => {
  it("forks share pages until they diverge, then continue exactly as fresh sequences", {
    timeout: 300_000,
  }, async () => {
    const model = await gpuModel("tiny-i2s");
    const prefix = LONG_PROMPT.slice(0, KV_PAGE + 3); // a full page and a partial one
    const a = model.createSequence();
    await model.step([{ sequence: a, tokens: prefix }]);
    const used = model.capacity().kvUsedBytes;
    const b = model.forkSequence(a);
    expect(model.capacity().kvUsedBytes).toBe(used); // shared, nothing copied yet
    const [ra, rb] = (
      await model.step([
        { sequence: a, tokens: [1234] },
        { sequence: b, tokens: [5678] },
      ])
    ).runs;
    // The shared partial page was copied for one of them; the full page is still shared.
    expect(model.capacity().kvUsedBytes).toBe(used + KV_PAGE * model.capacity().kvBytesPerToken);
    for (const [token, got] of [
      [1234, ra!],
      [5678, rb!],
    ] as const) {
      const fresh = await logitsBatched(model, [...prefix, token]);
      const vocab = model.description.hparams.vocabSize;
      const last = fresh.subarray(fresh.length - vocab);
      let worst = 0;
      for (let i = 0; i < vocab; i++) {
        worst = Math.max(worst, Math.abs(last[i]! - got.logits[i]!));
      }
      expect(worst).toBeLessThanOrEqual(1e-4);
    }
    model.truncateSequence(b, 2);
    model.freeSequence(a);
    model.freeSequence(b);
    expect(model.capacity().kvUsedBytes).toBe(0);
    await model.dispose();
  });

  it("a step that needs more KV pages than are free fails with OUT_OF_MEMORY and changes nothing", {
    timeout: 300_000,
  }, async () => {
    const description = await readModelDescription(await fixture("tiny-i2s"));
    const perToken = 2 * 2 * 2 * 64; // layers × (K, V) × f16 × KV width
    const be = await WebGpuBackend.create({ kvBudgetBytes: 2 * KV_PAGE * perToken });
    const model = await be.compile(description, { contextLength: 64 });
    expect(model.capacity().kvBytesPerToken).toBe(perToken);
    expect(model.capacity().kvBudgetBytes).toBe(2 * KV_PAGE * perToken);
    const seq = model.createSequence();
    await model.step([{ sequence: seq, tokens: LONG_PROMPT }]); // 20 tokens: 2 pages
    const other = model.createSequence();
    await expect(model.step([{ sequence: other, tokens: [128000] }])).rejects.toMatchObject({
      code: EngineErrorCode.OUT_OF_MEMORY,
    });
    expect(model.sequenceLength(other)).toBe(0);
    model.freeSequence(seq);
    const { runs } = await model.step([{ sequence: other, tokens: [128000] }]);
    expect(runs[0]!.logits.length).toBe(model.description.hparams.vocabSize);
    await model.dispose();
    be.release();
  });
});

describe("steps longer than one GPU step", () => {
  it("are split and give the same logits as one step", { timeout: 300_000 }, async () => {
    const small = await gpuModel("tiny-tq1", 64, { maxBatch: 7 });
    expect(small.maxBatch).toBe(7);
    const whole = await gpuModel("tiny-tq1");
    const a = await logitsBatched(small, LONG_PROMPT);
    const b = await logitsBatched(whole, LONG_PROMPT);
    let worst = 0;
    for (let i = 0; i < a.length; i++) {
      worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    }
    expect(worst).toBeLessThanOrEqual(1e-4);
    await small.dispose();
    await whole.dispose();
  });
});

describe("receipts' view of a step", () => {
  it("one dispatch per projection and one attention per layer and step", {
    timeout: 300_000,
  }, async () => {
    const model = await gpuModel("tiny-i2s");
    const seq = model.createSequence();
    await model.step([{ sequence: seq, tokens: LONG_PROMPT.slice(0, 4) }]);
    const counts = model.kernelCounts();
    const sum = (tag: string) =>
      [...counts].filter(([id]) => id.includes(tag)).reduce((s, [, n]) => s + n, 0);
    const layers = model.description.hparams.nLayer;
    expect(sum(".linear.i2_s.")).toBe(7 * layers);
    expect(sum(".attention.")).toBe(layers);
    expect(sum(".embed.")).toBe(1);
    expect([...counts.keys()]).toContain("webgpu.embed.f16");
    expect(sum(".output.f16.")).toBeGreaterThanOrEqual(1);
    // The norms quantize for their projections: no separate quantization pass.
    expect(sum(".quantize.")).toBe(0);
    await model.dispose();
  });
});
