#!/usr/bin/env node
// Decode at depth on the CPU backend: for each depth, a prompt of that many tokens fills a
// sequence's KV cache, then the first token after it and `tokens` more single-token steps are
// timed; prints the first token's ms, ms a token of the others, the attention's share (from the
// addon's op timers) and the rate at which attention read the KV cache (its bytes a token at the
// mean position over its milliseconds), as a table.
//   node scripts/profile-depth.mjs model.gguf <kernel-path> [depths=0,1024,4000] [tokens=32]
//     [threads=2]
// Set BITNET_KERNELS_CPU_PATH to time another build of the addon.
import { loadModel, registerBackend } from "../packages/engine-core/dist/index.js";

registerBackend("cpu", () => import("../packages/kernels-cpu/dist/index.js"));
const [file, path, ...rest] = process.argv.slice(2);
if (file === undefined || path === undefined) {
  console.error(
    "usage: node scripts/profile-depth.mjs model.gguf <kernel-path> [depths=0,1024,4000] [tokens=32]",
  );
  process.exit(2);
}
const options = Object.fromEntries(rest.map((a) => a.split("=")));
const depths = (options.depths ?? "0,1024,4000").split(",").map(Number);
const N = Number(options.tokens ?? "32");
const m = await loadModel(file, {
  backend: "cpu",
  contextLength: Math.max(...depths) + N + 8,
  backendOptions: { cpu: { threads: Number(options.threads ?? "2"), kernelPath: path } },
});
const vocab = m.description.hparams.vocabSize;
const sum = (ops, prefix) =>
  Object.entries(ops)
    .filter(([k]) => k.startsWith(prefix))
    .reduce((a, [, v]) => a + v, 0);
// Warm-up (the first steps after a load page in code and fault scratch buffers).
const warm = m.createSequence();
for (let t = 0; t < 4; t++) {
  await m.step([{ sequence: warm, tokens: [1 + t], transient: true }]);
}
m.freeSequence(warm);
const rows = [];
for (const depth of depths) {
  const seq = m.createSequence();
  for (let p = 0; p < depth; p += 512) {
    const n = Math.min(512, depth - p);
    const tokens = Array.from({ length: n }, (_, i) => 1 + (((p + i) * 7919) % (vocab - 1)));
    await m.step([{ sequence: seq, tokens, logits: "last", transient: true }]);
    process.stderr.write(`\rdepth ${depth}: prompt ${p + n}/${depth}`);
  }
  // The first token after the prompt apart (it once paid for the KV cache's growth), then N more.
  const f0 = performance.now();
  await m.step([{ sequence: seq, tokens: [1 + (999 % (vocab - 1))], transient: true }]);
  const first = performance.now() - f0;
  const before = { ...m.info().opMilliseconds };
  const t0 = performance.now();
  for (let t = 0; t < N; t++) {
    await m.step([{ sequence: seq, tokens: [1 + ((1000 + t) % (vocab - 1))], transient: true }]);
  }
  const ms = (performance.now() - t0) / N;
  const after = m.info().opMilliseconds;
  const attention = (sum(after, "attention") - sum(before, "attention")) / N;
  const kvBytes = m.info().kvBytesPerToken * (depth + 1 + N / 2);
  rows.push([depth, first, ms, attention, kvBytes / 1e6 / attention]);
  m.freeSequence(seq);
  process.stderr.write("\r\x1b[K");
}
console.log(`${file}, ${m.info().kernelPath}, ${N} tokens per depth`);
console.log("| depth | first token ms | ms a token | attention ms | KV read in attention (GB/s) |");
console.log("| ---: | ---: | ---: | ---: | ---: |");
for (const [depth, first, ms, attention, rate] of rows) {
  console.log(
    `| ${depth} | ${first.toFixed(1)} | ${ms.toFixed(2)} | ${attention.toFixed(2)} | ${rate.toFixed(1)} |`,
  );
}
await m.dispose();
