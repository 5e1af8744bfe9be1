#!/usr/bin/env node
// Regenerates fixtures/golden-greedy.json: 16 greedy tokens per prompt per tiny fixture, from the
// reference backend. Run only when a change of numerics is intended, and say why in the commit.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { loadModel } from "../packages/engine-core/dist/index.js";
import { Tokenizer } from "../packages/tokenizers/dist/index.js";
import { PRESETS, writeFixture } from "../tools/fixtures/dist/index.js";

const PROMPTS = [
  "The capital of France is",
  "def fibonacci(n):",
  "Once upon a time, there was a little",
];
const out = {
  note: "16 greedy tokens per prompt (BOS added), reference backend, fixture seed 1",
  models: {},
};
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "golden-"));
for (const name of ["tiny-i2s", "tiny-tq2", "tiny-tq1", "tiny-spm"]) {
  const file = path.join(dir, `${name}.gguf`);
  await writeFixture(PRESETS[name], file);
  const model = await loadModel(file, { backend: "reference", contextLength: 64 });
  const tokenizer = Tokenizer.fromGguf(model.description.file.metadata);
  out.models[name] = {};
  for (const prompt of PROMPTS) {
    const seq = model.createSequence();
    let { runs } = await model.step([{ sequence: seq, tokens: tokenizer.encode(prompt) }]);
    const tokens = [];
    for (let i = 0; i < 16; i++) {
      const l = runs[0].logits;
      let best = 0;
      for (let t = 1; t < l.length; t++) {
        if (l[t] > l[best]) {
          best = t;
        }
      }
      tokens.push(best);
      ({ runs } = await model.step([{ sequence: seq, tokens: [best] }]));
    }
    out.models[name][prompt] = tokens;
  }
  await model.dispose();
}
fs.rmSync(dir, { recursive: true, force: true });
fs.writeFileSync("fixtures/golden-greedy.json", `${JSON.stringify(out, null, 2)}\n`);
console.log("wrote fixtures/golden-greedy.json");
