#!/usr/bin/env node
// One prompt step on the CPU backend, timed, and where it went (the addon's per-op milliseconds):
//   node scripts/profile-step.mjs model.gguf <kernel-path> [tokens=128] [option=value …]
// (further arguments are CPU backend options, e.g. tq1=direct or addonPath=/abs/other.node; and
// logits=all, which asks for every token's logits, as a speculative verification step does).
// A warm-up step, then 3 timed ones and their median.
import { loadModel, registerBackend } from "../packages/engine-core/dist/index.js";

registerBackend("cpu", () => import("../packages/kernels-cpu/dist/index.js"));
const [file, path, T] = [process.argv[2], process.argv[3], Number(process.argv[4] ?? 128)];
const { logits = "last", ...extra } = Object.fromEntries(
  process.argv.slice(5).map((a) => {
    const [k, v] = a.split("=");
    return [k, /^\d+$/.test(v) ? Number(v) : v];
  }),
);
const m = await loadModel(file, {
  backend: "cpu",
  contextLength: 512,
  backendOptions: { cpu: { threads: 2, kernelPath: path, ...extra } },
});
const tokens = Array.from({ length: T }, (_, i) => 1000 + i);
const times = [];
let warmup = {};
for (let rep = -1; rep < 3; rep++) {
  const s = m.createSequence();
  const t0 = performance.now();
  await m.step([{ sequence: s, tokens, logits }]);
  const ms = performance.now() - t0;
  m.freeSequence(s);
  if (rep < 0) {
    warmup = { ...m.info().opMilliseconds }; // the warm-up step (first touches), left out below
    continue;
  }
  times.push(ms);
  console.log(`rep ${rep}: ${ms.toFixed(1)} ms = ${((T * 1000) / ms).toFixed(1)} t/s`);
}
const median = times.sort((a, b) => a - b)[1];
console.log(`median: ${median.toFixed(1)} ms = ${((T * 1000) / median).toFixed(1)} t/s`);
// Per timed step: the addon's totals less the warm-up's, over the 3 timed steps.
const ops = Object.entries(m.info().opMilliseconds).map(([k, v]) => [
  k,
  (v - (warmup[k] ?? 0)) / 3,
]);
console.log(`ms per step (mean of the timed steps; thread 0's wall time, barrier waits included):`);
console.log(
  ops
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v.toFixed(1)}`)
    .join("\n"),
);
await m.dispose();
