/**
 * Cross-validation against llama.cpp (node-llama-cpp 3.22.1, prebuilt) on the tiny TQ2_0 and
 * TQ1_0 fixtures, judged against a yardstick measured in the same run: our reference backend in
 * float64, a correct implementation with another summation order.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { loadModel, registerBackend } from "@bitnet-ts/engine-core";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { perplexity } from "@bitnet-ts/generation";
import { Tokenizer } from "@bitnet-ts/tokenizers";
import { afterAll, describe, expect, it } from "vitest";
import {
  type CrossvalReport,
  crossvalidate,
  formatReport,
  type LlamaRuns,
  runLlama,
} from "./crossval";
import { LlamaRunsMismatchError } from "./errors";
import { llamaPerplexity } from "./perplexity";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "crossval-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const repo = path.resolve(import.meta.dirname, "../../..");
const prompts = fs
  .readFileSync(path.join(repo, "fixtures/crossval-prompts.txt"), "utf8")
  .split("\n")
  .filter((l) => l.trim());

async function model(name: string): Promise<string> {
  const file = path.join(tmp, `${name}.gguf`);
  if (!fs.existsSync(file)) {
    await writeFixture(PRESETS[name]!, file);
  }
  return file;
}

/**
 * llama.cpp's runs on a fixture, made once and shared by this file's comparisons (each of them
 * would otherwise rerun llama.cpp on the same file and prompts: about 30 s each).
 */
const llamaRuns = new Map<string, Promise<LlamaRuns>>();
async function llama(name: string): Promise<LlamaRuns> {
  let runs = llamaRuns.get(name);
  if (runs === undefined) {
    runs = model(name).then((file) => runLlama(file, prompts, { nTokens: 16 }));
    llamaRuns.set(name, runs);
  }
  return runs;
}

/** The acceptance rule: no farther from llama.cpp than the f64 yardstick allows, and absolute floors. */
function judge(report: CrossvalReport): void {
  const [ours, yardstick] = report.engines;
  expect(ours!.engine).toContain("reference (ggml numerics)");
  expect(yardstick!.engine).toContain("f64");
  expect(ours!.summary.meanKl).toBeLessThanOrEqual(2 * yardstick!.summary.meanKl);
  expect(ours!.summary.top1Agreement).toBeGreaterThanOrEqual(
    yardstick!.summary.top1Agreement - 0.03,
  );
  expect(ours!.summary.top1Agreement).toBeGreaterThanOrEqual(0.9);
  expect(ours!.summary.meanKl).toBeLessThanOrEqual(0.05);
  expect(ours!.first8Identical).toBeGreaterThanOrEqual(yardstick!.first8Identical - 1);
  // llama.cpp against itself is the floor; it must be (near) perfect.
  expect(report.llamaSelf.top1Agreement).toBeGreaterThanOrEqual(0.99);
}

describe("cross-validation against llama.cpp", () => {
  for (const name of ["tiny-tq2", "tiny-tq1"]) {
    it(`${name}: within the f64 yardstick of llama.cpp`, { timeout: 240_000 }, async () => {
      const report = await crossvalidate(await model(name), prompts, {
        nTokens: 16,
        llama: await llama(name),
      });
      console.info(formatReport(report));
      judge(report);
    });
  }

  it("tiny-tq2 on the native CPU backend: no farther from llama.cpp than the reference backend", {
    timeout: 240_000,
  }, async () => {
    registerBackend("cpu", () => import("@bitnet-ts/kernels-cpu"));
    const report = await crossvalidate(await model("tiny-tq2"), prompts, {
      nTokens: 16,
      llama: await llama("tiny-tq2"),
      backends: ["cpu", "reference"],
    });
    console.info(formatReport(report));
    const [cpu, reference] = report.engines;
    expect(cpu!.engine).toBe("bitnet-ts cpu");
    expect(cpu!.summary.meanKl).toBeLessThanOrEqual(reference!.summary.meanKl * 1.01 + 1e-9);
    expect(cpu!.summary.top1Agreement).toBeGreaterThanOrEqual(reference!.summary.top1Agreement);
    expect(cpu!.first8Identical).toBeGreaterThanOrEqual(reference!.first8Identical);
  });

  for (const name of ["tiny-tq2", "tiny-tq1"]) {
    it(`${name} on the WebGPU backend (lavapipe in CI): within the f64 yardstick of llama.cpp, and of the CPU backend`, {
      timeout: 600_000,
    }, async () => {
      registerBackend("cpu", () => import("@bitnet-ts/kernels-cpu"));
      registerBackend("webgpu", () => import("@bitnet-ts/kernels-webgpu"));
      const report = await crossvalidate(await model(name), prompts, {
        nTokens: 16,
        llama: await llama(name),
        backends: ["webgpu", "reference-f64", "cpu"],
      });
      console.info(formatReport(report));
      const [gpu, yardstick, cpu] = report.engines;
      expect(gpu!.engine).toBe("bitnet-ts webgpu");
      // The rule every engine of ours meets: no farther from llama.cpp than the f64 yardstick.
      expect(gpu!.summary.meanKl).toBeLessThanOrEqual(2 * yardstick!.summary.meanKl);
      expect(gpu!.summary.top1Agreement).toBeGreaterThanOrEqual(
        yardstick!.summary.top1Agreement - 0.03,
      );
      expect(gpu!.summary.top1Agreement).toBeGreaterThanOrEqual(0.9);
      expect(gpu!.first8Identical).toBeGreaterThanOrEqual(yardstick!.first8Identical - 1);
      // And as close to llama.cpp as the CPU backend is (same numerics, other summation order).
      expect(gpu!.summary.meanKl).toBeLessThanOrEqual(2 * cpu!.summary.meanKl + 1e-6);
      expect(gpu!.summary.top1Agreement).toBeGreaterThanOrEqual(cpu!.summary.top1Agreement - 0.03);
    });
  }

  it("refuses llama.cpp runs of another file, length or prompt list", async () => {
    const runs = await llama("tiny-tq2");
    const other = { ...runs, model: await model("tiny-tq1") };
    await expect(
      crossvalidate(await model("tiny-tq1"), prompts, { nTokens: 16, llama: runs }),
    ).rejects.toThrow(LlamaRunsMismatchError);
    await expect(crossvalidate(other.model, prompts, { nTokens: 8, llama: other })).rejects.toThrow(
      /generated 16 tokens per prompt, not 8/,
    );
    await expect(
      crossvalidate(other.model, prompts.slice(1), { nTokens: 16, llama: other }),
    ).rejects.toThrow(/prompts differ/);
  });

  it("tiny-tq2: perplexity within 1% of llama.cpp's", { timeout: 240_000 }, async () => {
    const file = await model("tiny-tq2");
    const text = fs.readFileSync(path.join(repo, "fixtures/perplexity-sample.txt"), "utf8");
    const engine = await loadModel(file, { backend: "reference", contextLength: 64 });
    const tokenizer = Tokenizer.fromGguf(engine.description.file.metadata);
    const tokens = tokenizer.encode(text);
    const ours = await perplexity(engine, tokens, { contextLength: 64, bos: tokenizer.bos });
    await engine.dispose();
    const theirs = await llamaPerplexity(file, tokens, {
      contextLength: 64,
      vocabSize: tokenizer.vocabSize,
      bos: tokenizer.bos,
    });
    console.info(
      `perplexity: ours ${ours.ppl.toFixed(4)} ± ${ours.error.toFixed(4)}, llama.cpp ${theirs.ppl.toFixed(4)} ± ${theirs.error.toFixed(4)} (${ours.scored} tokens)`,
    );
    expect(ours.scored).toBe(theirs.scored);
    expect(Math.abs(ours.ppl - theirs.ppl) / theirs.ppl).toBeLessThan(0.01);
  });
});
