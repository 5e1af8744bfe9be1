#!/usr/bin/env node
// Decode on the CPU backend, timed, and where it went (the addon's per-op milliseconds per token):
//   node scripts/profile-decode.mjs model.gguf <kernel-path> [head=q8_0|q6_k] [tq1=direct]
// Four repetitions of 32 single-token steps; further arguments are CPU backend options.
import { loadModel, registerBackend } from "../packages/engine-core/dist/index.js";

registerBackend("cpu", () => import("../packages/kernels-cpu/dist/index.js"));
const [file, path, ...rest] = process.argv.slice(2);
const extra = Object.fromEntries(rest.map((a) => a.split("=")));
const m = await loadModel(file, {
  backend: "cpu",
  contextLength: 128,
  backendOptions: { cpu: { threads: 2, kernelPath: path, ...extra } },
});
const N = 32;
for (let rep = 0; rep < 4; rep++) {
  const before = { ...m.info().opMilliseconds };
  const s = m.createSequence();
  const t0 = performance.now();
  for (let t = 0; t < N; t++) {
    await m.step([{ sequence: s, tokens: [1000 + t] }]);
  }
  const ms = performance.now() - t0;
  m.freeSequence(s);
  const ops = Object.entries(m.info().opMilliseconds)
    .map(([k, v]) => [k, (v - (before[k] ?? 0)) / N])
    .sort((a, b) => b[1] - a[1])
    .slice(0, 6);
  console.log(
    `rep ${rep}: ${((N * 1000) / ms).toFixed(1)} t/s; ms/token ${ops.map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", ")}`,
  );
}
await m.dispose();
