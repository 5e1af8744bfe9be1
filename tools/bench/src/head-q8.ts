/**
 * What requantizing the F16 output head to Q8_0 at load costs in accuracy: per-position cosine
 * similarity of the logits and top-1 agreement against the file's F16 head, on the CPU backend.
 * (Its speed: `bitnet bench -m model.gguf --head-q8_0`.)
 *
 *   pnpm bench:head-q8 model.gguf [prompts.txt]
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { comparePosition } from "@bitnet-ts/crossval";
import { loadModel, registerBackend } from "@bitnet-ts/engine-core";
import { Tokenizer } from "@bitnet-ts/tokenizers";

registerBackend("cpu", () => import("@bitnet-ts/kernels-cpu"));

const [
  modelPath,
  promptsPath = path.resolve(import.meta.dirname, "../../../fixtures/prompts.txt"),
] = process.argv.slice(2);
if (modelPath === undefined) {
  console.error("usage: pnpm bench:head-q8 model.gguf [prompts.txt]");
  process.exit(1);
}
const prompts = fs
  .readFileSync(promptsPath, "utf8")
  .split("\n")
  .filter((l) => l.trim());
const f16 = await loadModel(modelPath, { backend: "cpu", contextLength: 256 });
const q8 = await loadModel(modelPath, {
  backend: "cpu",
  contextLength: 256,
  backendOptions: { cpu: { headQ8_0: true } },
});
const tokenizer = Tokenizer.fromGguf(f16.description.file.metadata);
const vocab = f16.description.hparams.vocabSize;

let positions = 0;
let top1 = 0;
let minCos = 1;
let sumCos = 0;
let maxAbs = 0;
for (const prompt of prompts) {
  const tokens = tokenizer.encode(prompt);
  const rows = await Promise.all(
    [f16, q8].map(async (m) => {
      const seq = m.createSequence();
      const { runs } = await m.step([{ sequence: seq, tokens, logits: "all" }]);
      m.freeSequence(seq);
      return runs[0]!.logits;
    }),
  );
  for (let t = 0; t < tokens.length; t++) {
    const a = rows[0]!.subarray(t * vocab, (t + 1) * vocab);
    const b = rows[1]!.subarray(t * vocab, (t + 1) * vocab);
    const m = comparePosition(a, 0, b, 0, vocab);
    for (let i = 0; i < vocab; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(a[i]! - b[i]!));
    }
    minCos = Math.min(minCos, m.cosine);
    sumCos += m.cosine;
    top1 += m.top1 ? 1 : 0;
    positions++;
  }
}
console.log(
  `Q8_0 head vs F16 head on ${path.basename(modelPath)}: ${prompts.length} prompts, ${positions} positions`,
);
console.log(`  top-1 agreement ${((100 * top1) / positions).toFixed(1)}%`);
console.log(`  logits cosine: mean ${(sumCos / positions).toFixed(6)}, min ${minCos.toFixed(6)}`);
console.log(`  max |Δlogit| ${maxAbs.toFixed(4)}`);
await f16.dispose();
await q8.dispose();
