// Prompt (prefill) speed of two or more builds of the addon, alternating in one process: each
// build loads the model (same file, own mapping) and runs one uncounted prompt, then in every
// round each runs one P-token prompt (transient, a fresh sequence, logits of the last token
// only), the order reversed every other round. With DEPTH, each build first fills a sequence with
// DEPTH tokens and every prompt continues a fork of it, so the prompt's attention reads a deep
// cache. Prints the median tokens/s and the median milliseconds the prompt spent in attention
// (the op's own timer), so two builds are compared minute by minute on a machine whose speed
// drifts. Run `pnpm build` in packages/engine-core and here first.
//   node packages/kernels-cpu/bench/ab-prefill.mjs <model.gguf> <kernel path> <rounds> <a.node> <b.node> [...]
// Environment: P (prompt tokens, default 128), DEPTH (positions before the prompt, default 0),
// THREADS (default 2).
import { fillBaseSequences, openBuilds, sequenceFor } from "./ab-builds.mjs";

const P = Number(process.env.P ?? 128);
const DEPTH = Number(process.env.DEPTH ?? 0);
const { rounds, names, models } = await openBuilds("ab-prefill.mjs", DEPTH + P + 16);
const vocab = models[0].description.hparams.vocabSize;
const tokens = Array.from({ length: P }, (_, i) => 1000 + ((i * 7919) % (vocab - 1000)));
// Each build's sequence of DEPTH tokens that the prompts continue (forks of it), or none.
const bases = await fillBaseSequences(models, DEPTH);
const promptSequence = (i) => sequenceFor(models, bases, i);
const speeds = names.map(() => []);
const attention = names.map(() => []);
const attentionMs = (ops) =>
  Object.entries(ops)
    .filter(([k]) => k.startsWith("attention"))
    .reduce((a, [, v]) => a + v, 0);

for (let i = 0; i < models.length; i++) {
  // Warm-up, not counted: the first prompt also allocates the cache and faults in its pages.
  const seq = promptSequence(i);
  await models[i].step([{ sequence: seq, tokens, logits: "last", transient: true }]);
  models[i].freeSequence(seq);
}
for (let r = 0; r < rounds; r++) {
  const order = names.map((_, i) => i);
  if (r % 2 === 1) {
    order.reverse();
  }
  const line = [];
  for (const i of order) {
    const model = models[i];
    const seq = promptSequence(i);
    const before = attentionMs(model.info().opMilliseconds);
    const started = performance.now();
    await model.step([{ sequence: seq, tokens, logits: "last", transient: true }]);
    const ms = performance.now() - started;
    model.freeSequence(seq);
    speeds[i].push((P / ms) * 1000);
    attention[i].push(attentionMs(model.info().opMilliseconds) - before);
    line.push(`${names[i]} ${((P / ms) * 1000).toFixed(2)} t/s`);
  }
  console.log(`round ${r + 1}: ${line.join("; ")}`);
}
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
names.forEach((name, i) => {
  console.log(
    `${name}: pp${P}${DEPTH > 0 ? ` at depth ${DEPTH}` : ""} median ${median(speeds[i]).toFixed(2)} t/s, attention ${median(attention[i]).toFixed(1)} ms a prompt`,
  );
});
for (const model of models) {
  await model.dispose();
}
