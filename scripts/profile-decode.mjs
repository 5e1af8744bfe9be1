#!/usr/bin/env node
// Decode on the CPU backend, timed, and where it went (the addon's per-op milliseconds per token):
//   node scripts/profile-decode.mjs model.gguf <kernel-path> [head=q8_0|q6_k] [tq1=direct]
//     [tokens=32] [reps=4]
// `reps` repetitions of `tokens` single-token steps (the first one also warms up); further
// arguments are CPU backend options. One-token steps run norms, the GLU, residual adds and RoPE
// inside the projections and attention that read them (their time counts there); run with
// BITNET_DECODE_FUSE=0 to time them apart.
import { loadModel, registerBackend } from "../packages/engine-core/dist/index.js";

registerBackend("cpu", () => import("../packages/kernels-cpu/dist/index.js"));
const [file, path, ...rest] = process.argv.slice(2);
const { tokens = "32", reps = "4", ...extra } = Object.fromEntries(rest.map((a) => a.split("=")));
const N = Number(tokens);
const m = await loadModel(file, {
  backend: "cpu",
  contextLength: Math.max(128, N + 8),
  backendOptions: { cpu: { threads: 2, kernelPath: path, ...extra } },
});
for (let rep = 0; rep < Number(reps); rep++) {
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
