// Decode speed of two or more builds of the addon, alternating in one process: each build loads
// the model (same file, own mapping), then in every round each decodes N tokens (transient, one
// fresh sequence), the order reversed every other round, and a bandwidth probe follows the
// round. Prints per round and at the end the medians of the time per token, of the head's and
// the projections' times (from the ops' own timers) and of the time outside every op (`outside`:
// setting a step up, handing it to native code and its promise back), so two builds are compared
// minute by minute on a machine whose memory speed drifts. With DEPTH, each build first fills a
// sequence with DEPTH tokens and every turn decodes on a fork of it, so each token's attention
// reads a deep cache (the attention's own milliseconds are printed too). Run `pnpm build` in
// packages/engine-core and here first.
//   node packages/kernels-cpu/bench/ab-addons.mjs <model.gguf> <kernel path> <rounds> <a.node> <b.node> [...]
// Environment: N (tokens per turn, default 32), DEPTH (positions before them, default 0),
// THREADS (default 2).
import { measureReadBandwidth } from "../dist/index.js";
import { fillBaseSequences, openBuilds, sequenceFor } from "./ab-builds.mjs";

const N = Number(process.env.N ?? 32);
const DEPTH = Number(process.env.DEPTH ?? 0);
const { file, rounds, threads, names, models } = await openBuilds("ab-addons.mjs", DEPTH + N + 8);
// Milliseconds of the ops whose names start with prefix ("output": the head; "linear": projections).
const sum = (ops, prefix) =>
  Object.entries(ops)
    .filter(([k]) => k.startsWith(prefix))
    .reduce((a, [, v]) => a + v, 0);
const results = names.map(() => ({ token: [], head: [], linear: [], attention: [], outside: [] }));
// Each build's sequence of DEPTH tokens that the turns continue (forks of it), or none.
const bases = await fillBaseSequences(models, DEPTH);

async function turn(i) {
  const m = models[i];
  const before = { ...m.info().opMilliseconds };
  const seq = sequenceFor(models, bases, i);
  const t0 = performance.now();
  for (let t = 0; t < N; t++) {
    await m.step([{ sequence: seq, tokens: [1000 + t], transient: true }]);
  }
  const ms = (performance.now() - t0) / N;
  m.freeSequence(seq);
  const after = m.info().opMilliseconds;
  results[i].token.push(ms);
  results[i].head.push((sum(after, "output") - sum(before, "output")) / N);
  results[i].linear.push((sum(after, "linear") - sum(before, "linear")) / N);
  results[i].attention.push((sum(after, "attention") - sum(before, "attention")) / N);
  results[i].outside.push(ms - (sum(after, "") - sum(before, "")) / N);
}

const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
for (let i = 0; i < models.length; i++) {
  await turn(i); // warm-up, not counted
}
for (const r of results) {
  for (const k of Object.keys(r)) {
    r[k].length = 0;
  }
}
for (let round = 0; round < rounds; round++) {
  const order = models.map((_, i) => i);
  if (round % 2 === 1) {
    order.reverse();
  }
  for (const i of order) {
    await turn(i);
  }
  const probe = (await measureReadBandwidth({ path: file, threads, reps: 2 })).bestGbs;
  console.log(
    `round ${round + 1}: probe ${probe.toFixed(1)} GB/s; ${names
      .map(
        (n, i) =>
          `${n} ${results[i].token.at(-1).toFixed(2)} ms/token (head ${results[i].head.at(-1).toFixed(2)}, projections ${results[i].linear.at(-1).toFixed(2)}, attention ${results[i].attention.at(-1).toFixed(2)}, outside ${results[i].outside.at(-1).toFixed(2)} ms)`,
      )
      .join("; ")}`,
  );
}
for (let i = 0; i < names.length; i++) {
  const r = results[i];
  console.log(
    `${names[i]}: median ${median(r.token).toFixed(2)} ms/token, head ${median(r.head).toFixed(2)} ms, projections ${median(r.linear).toFixed(2)} ms, attention ${median(r.attention).toFixed(2)} ms, outside the ops ${median(r.outside).toFixed(2)} ms`,
  );
}
if (names.length === 2) {
  // Deep in a context the attention is what a change there moves; otherwise the projections.
  const [key, what] = DEPTH > 0 ? ["attention", "attention"] : ["linear", "projections"];
  const faster = results[0][key].filter((x, k) => results[1][key][k] < x).length;
  console.log(
    `${names[1]}'s ${what} faster than ${names[0]}'s in ${faster} of ${results[0][key].length} rounds`,
  );
}
for (const m of models) {
  await m.dispose();
}
