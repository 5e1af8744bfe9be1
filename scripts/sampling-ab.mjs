#!/usr/bin/env node
// Sampled decode with and without the backend's top-k reduction, in one process:
//   node scripts/sampling-ab.mjs model.gguf [kernel-path=auto] [tokens=64] [rounds=6]
// "top-k": the generator asks the CPU backend for each row's best candidates (Sampler.reduction)
// and draws from them; "whole rows": the same model seen through a proxy that drops each run's
// reduction, so the sampler walks the whole vocabulary in JavaScript. The two take turns round
// by round (a VM's speed drifts) with the same seeds; prints each round's decode t/s and medians.
import { registerBackend } from "../packages/engine-core/dist/index.js";
import { TextGenerator } from "../packages/generation/dist/index.js";

registerBackend("cpu", () => import("../packages/kernels-cpu/dist/index.js"));
const [file, kernelPath = "auto", tokens = "64", rounds = "6"] = process.argv.slice(2);
if (file === undefined) {
  console.error(
    "usage: node scripts/sampling-ab.mjs model.gguf [kernel-path=auto] [tokens=64] [rounds=6]",
  );
  process.exit(2);
}
const topK = await TextGenerator.load(file, {
  backend: "cpu",
  contextLength: Number(tokens) + 64,
  backendOptions: { cpu: { threads: 2, kernelPath } },
});
const model = topK.model;
const wholeRows = new TextGenerator(
  new Proxy(model, {
    get(target, key, receiver) {
      if (key === "step") {
        return (runs) => target.step(runs.map(({ reduce: _, ...run }) => run));
      }
      const value = Reflect.get(target, key, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  }),
  topK.tokenizer,
);
const rates = { "top-k": [], "whole rows": [] };
for (let r = 0; r < Number(rounds); r++) {
  const order = r % 2 === 0 ? ["top-k", "whole rows"] : ["whole rows", "top-k"];
  for (const mode of order) {
    const generator = mode === "top-k" ? topK : wholeRows;
    const { timings } = await generator.generate("Once upon a time", {
      maxTokens: Number(tokens),
      seed: 7 + r,
      ignoreEos: true,
    }).result;
    rates[mode].push(timings.generatedTokensPerSecond);
  }
}
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
for (const [mode, v] of Object.entries(rates)) {
  console.log(
    `${mode.padEnd(10)}  median ${median(v).toFixed(1)} t/s  (${v.map((x) => x.toFixed(1)).join(" ")})`,
  );
}
await topK.dispose();
