#!/usr/bin/env node
// A decode on the CPU backend, timed, and where each token's time went (the addon's per-op
// milliseconds, averaged over the tokens):
//   node scripts/profile-decode.mjs model.gguf <kernel-path> [tokens=64] [option=value …]
// (further arguments are CPU backend options, e.g. addonPath=/abs/other.node). One warm-up
// decode, then 3 timed ones from an empty cache; their median, and each op's mean per token.
import { loadModel, registerBackend } from "../packages/engine-core/dist/index.js";

registerBackend("cpu", () => import("../packages/kernels-cpu/dist/index.js"));
const [file, path, N] = [process.argv[2], process.argv[3], Number(process.argv[4] ?? 64)];
const extra = Object.fromEntries(process.argv.slice(5).map((a) => a.split("=")));
const m = await loadModel(file, {
  backend: "cpu",
  contextLength: N + 8,
  backendOptions: { cpu: { threads: 2, kernelPath: path, ...extra } },
});
const decode = async () => {
  const s = m.createSequence();
  const t0 = performance.now();
  for (let t = 0; t < N; t++) {
    await m.step([{ sequence: s, tokens: [1000 + t], transient: true }]);
  }
  m.freeSequence(s);
  return (performance.now() - t0) / N;
};
await decode(); // the warm-up
const times = [];
const perToken = {};
for (let rep = 0; rep < 3; rep++) {
  const before = { ...m.info().opMilliseconds };
  const ms = await decode();
  times.push(ms);
  for (const [op, total] of Object.entries(m.info().opMilliseconds)) {
    perToken[op] = (perToken[op] ?? 0) + (total - (before[op] ?? 0)) / N / 3;
  }
  console.log(`rep ${rep}: ${ms.toFixed(2)} ms a token`);
}
const median = times.sort((a, b) => a - b)[1];
console.log(`median: ${median.toFixed(2)} ms a token = ${(1000 / median).toFixed(2)} t/s`);
console.log(
  Object.entries(perToken)
    .sort((a, b) => b[1] - a[1])
    .map(([op, ms]) => `${op} ${ms.toFixed(3)} ms`)
    .join("\n"),
);
await m.dispose();
