/**
 * The CUDA backend end to end: the backend contract for every architecture, the pinned golden
 * greedy tokens, agreement with the reference logits, heads in other types, memory accounting
 * and bad input. Each runs on the GPU (skipped, with the reason, where there is none) and on the
 * CPU through the kernels' host twins (the same model code, so the orchestration is checked on
 * every machine).
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
import { type EmbeddingType, writeWithEmbeddingType } from "@bitnet-ts/fixtures";
import { Tokenizer } from "@bitnet-ts/tokenizers";
import { afterAll, describe, expect, it } from "vitest";
import {
  cleanup,
  cudaModel,
  fixture,
  LONG_PROMPT,
  NO_ADDON,
  NO_GPU,
  titled,
  tmp,
} from "../test/models";
import { CudaBackend, type CudaModel } from "./backend";
import { createBackend, kernelRules } from "./index";

afterAll(cleanup);

const OTHER = [128000, 5451, 5304, 264, 892, 11, 358, 1093, 279, 16053, 5679, 13];
const EXECUTIONS = [
  { execution: "device", skip: NO_GPU, label: "on the GPU" },
  { execution: "host", skip: NO_ADDON, label: "on the host twins" },
] as const;

for (const { execution, skip, label } of EXECUTIONS) {
  for (const name of ["tiny-i2s", "tiny-tq2", "tiny-tq1"]) {
    if (skip === false) {
      describeBackendContract(`${name} on cuda, ${label}`, () => cudaModel(name, execution), {
        prompt: LONG_PROMPT,
        other: OTHER,
      });
      if (name === "tiny-i2s") {
        // Steps split at maxBatch: the same logits as one step.
        describeBackendContract(
          `${name} on cuda, ${label}, 7 tokens per native step`,
          () => cudaModel(name, execution, 64, 7),
          { prompt: LONG_PROMPT, other: OTHER },
        );
      }
    } else {
      it.skip(titled(`the backend contract for ${name} on cuda, ${label}`, skip), () => {});
    }
  }
}

const golden = JSON.parse(
  fs.readFileSync(
    path.resolve(import.meta.dirname, "../../../fixtures/golden-greedy.json"),
    "utf8",
  ),
) as { models: Record<string, Record<string, number[]>> };

for (const { execution, skip, label } of EXECUTIONS) {
  describe(`golden greedy tokens ${label}`, () => {
    for (const name of ["tiny-i2s", "tiny-tq2", "tiny-tq1"]) {
      it.skipIf(skip !== false)(
        titled(`${name}: the pinned tokens`, skip),
        { timeout: 300_000 },
        async () => {
          const model = await cudaModel(name, execution);
          const tokenizer = Tokenizer.fromGguf(model.description.file.metadata);
          for (const [prompt, expected] of Object.entries(golden.models[name]!)) {
            const tokens = await greedyTokens(model, tokenizer.encode(prompt), expected.length);
            expect(tokens, `${name}: ${prompt}`).toEqual(expected);
          }
          await model.dispose();
        },
      );
    }
  });

  describe(`agreement with the reference backend ${label}`, () => {
    for (const name of ["tiny-i2s", "tiny-tq2", "tiny-tq1", "tiny-tq2-mha"]) {
      it.skipIf(skip !== false)(
        titled(`${name}: every position's logits within 1e-4 of the reference, same argmax`, skip),
        { timeout: 300_000 },
        async () => {
          const reference = await loadModel(await fixture(name), {
            backend: "reference",
            contextLength: 64,
          });
          const model = await cudaModel(name, execution);
          const a = await logitsBatched(reference, LONG_PROMPT);
          const b = await logitsBatched(model, LONG_PROMPT);
          let worst = 0;
          for (let i = 0; i < a.length; i++) {
            worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
          }
          expect(worst).toBeLessThan(1e-4);
          const vocab = model.description.hparams.vocabSize;
          expect([...argmaxRows(b, LONG_PROMPT.length, vocab)]).toEqual([
            ...argmaxRows(a, LONG_PROMPT.length, vocab),
          ]);
          // Every layer's two RoPEs run with its k/v stores, grouped-query or not.
          expect(model.kernelCounts().get("cuda.rope.neox.fused")).toBe(
            2 * model.description.hparams.nLayer,
          );
          await reference.dispose();
          await model.dispose();
        },
      );
    }
  });

  describe(`heads and embeddings in other types ${label}`, () => {
    for (const type of [
      "F32",
      "BF16",
      "Q8_0",
      "Q6_K",
    ] as const satisfies readonly EmbeddingType[]) {
      it.skipIf(skip !== false)(
        titled(
          `${type}: dequantized like the reference, logits within 1e-4 of it, same argmax`,
          skip,
        ),
        { timeout: 300_000 },
        async () => {
          const file = path.join(tmp, `tiny-tq2-${type.toLowerCase()}.gguf`);
          if (!fs.existsSync(file)) {
            await writeWithEmbeddingType(await fixture("tiny-tq2"), file, type);
          }
          const reference = await loadModel(file, { backend: "reference", contextLength: 64 });
          const model = await new CudaBackend({ execution }).compile(
            await readModelDescription(file),
            {
              contextLength: 64,
            },
          );
          const prompt = LONG_PROMPT.slice(0, 8);
          const a = await logitsBatched(reference, prompt);
          const b = await logitsBatched(model, prompt);
          let worst = 0;
          for (let i = 0; i < a.length; i++) {
            worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
          }
          expect(worst).toBeLessThan(1e-4);
          expect([...model.kernelCounts().keys()]).toContain(`cuda.output.${type.toLowerCase()}`);
          await reference.dispose();
          await model.dispose();
        },
      );
    }
  });

  describe(`memory and sequences ${label}`, () => {
    it.skipIf(skip !== false)(
      titled(
        "accounts weights, scratch and KV bytes; caches grow with the sequence and are freed with it",
        skip,
      ),
      { timeout: 300_000 },
      async () => {
        const model = await cudaModel("tiny-i2s", execution, 256);
        const before = model.memory();
        expect(before.weightBytes).toBeGreaterThan(0);
        expect(before.scratchBytes).toBeGreaterThan(0);
        expect(before.kvBytes).toBe(0);
        const hp = model.description.hparams;
        expect(before.kvBytesPerToken).toBe(2 * hp.nLayer * hp.nHeadKv * hp.headDim * 2);
        const seq = model.createSequence();
        await model.step([{ sequence: seq, tokens: LONG_PROMPT, logits: "none" }]);
        // The first allocation holds 64 positions.
        expect(model.memory().kvBytes).toBe(64 * before.kvBytesPerToken);
        const fork = model.forkSequence(seq);
        expect(model.memory().kvBytes).toBe(128 * before.kvBytesPerToken);
        const a = await model.step([{ sequence: seq, tokens: [1234] }]);
        const b = await model.step([{ sequence: fork, tokens: [1234] }]);
        expect(
          Buffer.from(b.runs[0]!.logits.buffer).equals(Buffer.from(a.runs[0]!.logits.buffer)),
        ).toBe(true);
        // Every norm before a ternary projection quantizes for it in its own kernel; the final
        // norm (before the f16 head) does not.
        const layers = model.description.hparams.nLayer;
        const counts = model.kernelCounts();
        expect(counts.get("cuda.rms_norm_quantize.i8")).toBe(4 * layers * 3);
        expect(counts.get("cuda.rms_norm.f32")).toBe(3);
        // Each layer's two residual adds run inside the next norm's kernel, but the last one
        // (its sum goes to the output norm, before the f16 head).
        expect(counts.get("cuda.add.f32.fused")).toBe((2 * layers - 1) * 3);
        expect(counts.get("cuda.add.f32")).toBe(3);
        // Each layer's GLU runs inside the sub-norm after it, and its two RoPEs with its k/v
        // stores (model.cc, fused_ops).
        expect(
          [...counts].filter(([id]) => id.startsWith("cuda.glu.") || id.startsWith("cuda.rope.")),
        ).toEqual([
          ["cuda.rope.neox.fused", 2 * layers * 3],
          ["cuda.glu.relu2.fused", layers * 3],
        ]);
        // The 20-token prompt's projections on tensor cores, the two decode steps' on dp4a.
        expect(counts.get("cuda.linear.i2_s.mma")).toBe(7 * layers);
        expect(counts.get("cuda.linear.i2_s.dp4a")).toBe(7 * layers * 2);
        model.freeSequence(fork);
        model.freeSequence(seq);
        expect(model.memory().kvBytes).toBe(0);
        expect(model.capacity().kvUsedBytes).toBe(0);
        await model.dispose();
      },
    );

    it.skipIf(skip !== false)(
      titled(
        "argmax and top-k selected on the executor equal reducing the whole rows, mixed in one step and between decode steps",
        skip,
      ),
      { timeout: 300_000 },
      async () => {
        await reductionsAgree(await cudaModel("tiny-i2s", execution));
        // The same with every row brought back whole (the switch for a GPU whose selection fails).
        process.env["BITNET_CUDA_DEVICE_TOP_K"] = "0";
        try {
          await reductionsAgree(await cudaModel("tiny-i2s", execution));
        } finally {
          delete process.env["BITNET_CUDA_DEVICE_TOP_K"];
        }
      },
    );

    it.skipIf(skip !== false)(
      titled("rejects bad steps with a typed error and keeps working", skip),
      { timeout: 300_000 },
      async () => {
        const model = await cudaModel("tiny-tq2", execution, 16);
        const seq = model.createSequence();
        await expect(model.step([{ sequence: seq, tokens: [1 << 30] }])).rejects.toMatchObject({
          code: EngineErrorCode.BAD_TOKEN,
        });
        await expect(
          model.step([{ sequence: seq, tokens: new Array(17).fill(1) }]),
        ).rejects.toMatchObject({
          code: EngineErrorCode.CONTEXT_FULL,
        });
        await expect(model.step([{ sequence: 999, tokens: [1] }])).rejects.toThrow();
        const ok = await model.step([{ sequence: seq, tokens: [791, 6864] }]);
        expect(ok.runs[0]!.logits.length).toBe(model.description.hparams.vocabSize);
        await model.dispose();
      },
    );
  });
}

describe("the backend where there is no GPU", () => {
  it.skipIf(NO_GPU === false)(
    titled(
      "createBackend throws CudaUnavailableError with the driver's reason",
      NO_GPU === false ? "a GPU is present" : false,
    ),
    () => {
      expect(() => createBackend()).toThrow(/could not (use a CUDA GPU|load the CUDA kernels)/);
      try {
        createBackend();
      } catch (error) {
        expect((error as { code?: string }).code).toBe("CUDA_UNAVAILABLE");
      }
    },
  );

  it("declares kernel rules that name the CUDA kernels", () => {
    expect(kernelRules.backends).toEqual(["cuda"]);
    expect(kernelRules.idPrefix).toBe("cuda.");
  });
});

/**
 * A step mixing whole rows, argmax and top-k (within and beyond what the GPU selects), then
 * decode steps whose reduction changes each time: every reduced result equals reducing the
 * whole rows.
 */
async function reductionsAgree(model: CudaModel): Promise<void> {
  const vocab = model.description.hparams.vocabSize;
  const prompt = LONG_PROMPT.slice(0, 6);
  const seqs = [0, 1, 2, 3].map(() => model.createSequence());
  const reductions = ["full", "argmax", { topK: 7 }, { topK: 300 }] as const;
  const first = await model.step(
    seqs.map((sequence, i) => ({
      sequence,
      tokens: prompt,
      logits: "all" as const,
      reduce: reductions[i]!,
    })),
  );
  const full = first.runs[0]!.logits;
  const rows = prompt.length;
  expect([...first.runs[1]!.argmax!]).toEqual([...argmaxRows(full, rows, vocab)]);
  for (const [i, k] of [
    [2, 7],
    [3, 300],
  ] as const) {
    const want = topKRows(full, rows, vocab, k);
    const got = first.runs[i]!.top!;
    expect(got.k).toBe(k);
    expect([...got.ids]).toEqual([...want.ids]);
    expect(Buffer.from(got.logits.buffer).equals(Buffer.from(want.logits.buffer))).toBe(true);
  }
  // Decode steps (one recorded step replayed on a GPU) whose reduction changes each time,
  // against the same tokens on a sequence that gets whole rows.
  const [plain, reduced] = [seqs[0]!, seqs[1]!];
  let token = 1234;
  for (const reduce of ["argmax", { topK: 40 }, "full", { topK: 256 }, "argmax"] as const) {
    const a = (await model.step([{ sequence: plain, tokens: [token] }])).runs[0]!;
    const b = (await model.step([{ sequence: reduced, tokens: [token], reduce }])).runs[0]!;
    const best = argmaxRows(a.logits, 1, vocab)[0]!;
    if (reduce === "full") {
      expect(Buffer.from(b.logits.buffer).equals(Buffer.from(a.logits.buffer))).toBe(true);
    } else {
      expect(b.logits.length).toBe(0);
      expect(b.argmax![0]).toBe(best);
      if (reduce !== "argmax") {
        const want = topKRows(a.logits, 1, vocab, reduce.topK);
        expect([...b.top!.ids]).toEqual([...want.ids]);
      }
    }
    token = best;
  }
  await model.dispose();
}
