/**
 * The full soak, as a script (the CI runs a shorter one in soak.test.ts):
 *
 *   pnpm soak model.gguf [--requests 10000] [--minutes 10] [--concurrency 8] [--rss-tolerance 0.05]
 *
 * Exits 1 when the server crashed, any request failed (a 5xx other than 503, a broken stream)
 * or its idle RSS grew by more than the tolerance between the warm-up and the end (a fall is
 * reported, not failed: see soak.ts).
 */
import { parseArgs } from "node:util";
import { formatSoak, runSoak } from "./soak";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    requests: { type: "string", default: "10000" },
    minutes: { type: "string", default: "10" },
    concurrency: { type: "string", default: "8" },
    "rss-tolerance": { type: "string", default: "0.05" },
  },
});
const model = positionals[0];
if (model === undefined) {
  console.error(
    "usage: pnpm soak model.gguf [--requests 10000] [--minutes 10] [--concurrency 8] [--rss-tolerance 0.05]",
  );
  process.exit(2);
}
const total = Number(values.requests);
let shown = 0;
const report = await runSoak({
  model,
  requests: total,
  concurrency: Number(values.concurrency),
  minDurationMs: Number(values.minutes) * 60_000,
  onProgress: (done) => {
    const step = Math.floor((20 * done) / total);
    if (step > shown) {
      shown = step;
      console.error(`soak: ${done}/${total} requests (${(100 * done) / total}%)`);
    }
  },
});
console.log(formatSoak(report));
for (const failure of report.failures.slice(0, 20)) {
  console.error(`failure: ${failure}`);
}
const tolerance = Number(values["rss-tolerance"]);
const ok = !report.crashed && report.failures.length === 0 && report.rssChange <= tolerance;
console.log(ok ? "soak passed" : "soak FAILED");
process.exitCode = ok ? 0 : 1;
