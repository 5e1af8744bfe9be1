/**
 * Aggregate generation throughput of `bitnet serve` at 1, 4 and 8 concurrent streams: each
 * stream is a client that sends chat completions back to back (max_tokens N, EOS ignored) over
 * loopback HTTP; throughput is generated tokens / wall time across all of them.
 *
 *   pnpm bench:server model.gguf [--tokens 32] [--requests 3] [--threads 2]
 */
import { parseArgs } from "node:util";
import { startServer } from "@bitnet-ts/server";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    tokens: { type: "string", default: "32" },
    requests: { type: "string", default: "3" },
    threads: { type: "string" },
  },
});
const model = positionals[0];
if (model === undefined) {
  console.error("usage: pnpm bench:server model.gguf [--tokens 32] [--requests 3] [--threads N]");
  process.exit(1);
}
const maxTokens = Number(values.tokens);
const perClient = Number(values.requests);
const server = await startServer({
  model,
  port: 0,
  parallel: 8,
  contextLength: 512,
  ...(values.threads === undefined ? {} : { threads: Number(values.threads) }),
});
await server.ready;

async function client(seed: number): Promise<number> {
  let tokens = 0;
  for (let i = 0; i < perClient; i++) {
    const r = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        messages: [
          { role: "user", content: `Tell me a story about the number ${seed * 100 + i}.` },
        ],
        max_tokens: maxTokens,
        ignore_eos: true,
        seed: seed * 100 + i,
      }),
    });
    const body = (await r.json()) as { usage: { completion_tokens: number } };
    tokens += body.usage.completion_tokens;
  }
  return tokens;
}

await client(0); // warm-up
const rows: [number, number, number][] = [];
for (const streams of [1, 4, 8]) {
  const started = performance.now();
  const counts = await Promise.all(Array.from({ length: streams }, (_, i) => client(i + 1)));
  const seconds = (performance.now() - started) / 1000;
  const total = counts.reduce((a, b) => a + b, 0);
  rows.push([streams, total, total / seconds]);
  console.error(`${streams} streams: ${total} tokens in ${seconds.toFixed(2)} s`);
}
const base = rows[0]![2];
console.log("| concurrent streams | generated tokens | aggregate t/s | vs 1 stream |");
console.log("| -----------------: | ---------------: | ------------: | ----------: |");
for (const [streams, total, tps] of rows) {
  console.log(`| ${streams} | ${total} | ${tps.toFixed(2)} | ${(tps / base).toFixed(2)}× |`);
}
await server.close();
