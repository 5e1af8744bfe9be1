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
import { CudaBackend } from "./backend";
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
    for (const name of ["tiny-i2s", "tiny-tq2", "tiny-tq1"]) {
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
        model.freeSequence(fork);
        model.freeSequence(seq);
        expect(model.memory().kvBytes).toBe(0);
        expect(model.capacity().kvUsedBytes).toBe(0);
        await model.dispose();
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
