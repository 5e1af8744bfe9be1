/**
 * The whole path a user's checkpoint takes, run live where PyTorch is installed: bitnet_train
 * trains a tiny BitNet for a few steps, writes a Hugging Face checkpoint, `bitnet convert` turns
 * it into I2_S and TQ2_0 GGUFs, bitnet_train.evaluate records PyTorch's logits, and the engine
 * must match them. Skipped, with the reason, where torch, sentencepiece or dict-gcide is missing.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { compareWithPytorch, formatComparison, readGolden } from "./compare";
import { findTrainerPython, runTrainer, TRAIN_DIR } from "./python";

const trainer = findTrainerPython();
const CLI = path.resolve(TRAIN_DIR, "../../apps/cli/dist/bitnet.js");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "bitnet-train-"));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function bitnet(args: readonly string[]): string {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });
  if (r.status !== 0) {
    throw new Error(`bitnet ${args.join(" ")} exited with ${r.status}:\n${r.stderr}`);
  }
  return r.stdout + r.stderr;
}

describe.skipIf(trainer.python === undefined)(
  `train → checkpoint → bitnet convert → engine vs PyTorch${trainer.missing ? ` (skipped: ${trainer.missing})` : ""}`,
  () => {
    const python = trainer.python!;
    const run = path.join(work, "run");

    it("trains a micro model and writes a Hugging Face checkpoint", () => {
      const out = runTrainer(python, "train", [
        "--preset",
        "micro",
        "--steps",
        "12",
        "--threads",
        "2",
        "--out",
        run,
      ]);
      expect(out).toMatch(/done: held-out loss/);
      for (const f of [
        "config.json",
        "model.safetensors",
        "tokenizer.model",
        "tokenizer_config.json",
      ]) {
        expect(fs.existsSync(path.join(run, "checkpoint", f)), f).toBe(true);
      }
      const metrics = JSON.parse(fs.readFileSync(path.join(run, "metrics.json"), "utf8"));
      expect(metrics.steps).toBe(12);
      expect(metrics.curve.at(-1).step).toBe(12);
      const config = JSON.parse(
        fs.readFileSync(path.join(run, "checkpoint", "config.json"), "utf8"),
      );
      expect(config).toMatchObject({
        model_type: "bitnet",
        hidden_act: "relu2",
        tie_word_embeddings: true,
      });
    });

    it("converts to I2_S and TQ2_0, and both match PyTorch", async () => {
      runTrainer(python, "evaluate", [
        "--checkpoint",
        path.join(run, "checkpoint"),
        "--text",
        path.join(run, "heldout.txt"),
        "--ctx",
        "64",
        "--chunks",
        "16",
        "--out",
        path.join(run, "golden"),
      ]);
      fs.copyFileSync(path.join(run, "heldout.txt"), path.join(run, "golden", "heldout.txt"));
      const data = readGolden(path.join(run, "golden"));
      for (const type of ["i2_s", "tq2_0"]) {
        const gguf = path.join(run, `model-${type}.gguf`);
        expect(
          bitnet(["convert", path.join(run, "checkpoint"), "-o", gguf, "--type", type]),
        ).toMatch(/bitnet convert/);
        const r = await compareWithPytorch(gguf, data, { backend: "cpu", threads: 2 });
        console.log(`${type}\n${formatComparison([r])}`);
        expect(r.tokenizedIdentical).toBe(r.tokenizedTotal);
        expect(r.logits.top1Agreement).toBeGreaterThanOrEqual(0.9);
        expect(r.logits.meanKl).toBeLessThan(1e-3);
        expect(r.perplexityRelativeDifference).toBeLessThan(0.01);
      }
    });
  },
);
