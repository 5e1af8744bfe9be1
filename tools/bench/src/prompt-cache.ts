/**
 * Time to first token with the prompt cache: chat requests that share a long system prompt
 * (default 1,000 tokens) against `bitnet serve` over loopback HTTP, streamed, greedy.
 *
 * Per round (a new system prompt each, so the first request is cold):
 *   cold    system + question 1, nothing cached
 *   shared  system + question 2: the system prompt's KV comes from the cache
 *   repeat  system + question 1 again: all but the last prompt token from the cache
 *   control system + question 2 with cache_prompt: false (whole prompt evaluated); its reply must
 *           be the same text as "shared"'s
 *
 *   pnpm bench:prompt-cache model.gguf [--system-tokens 1000] [--rounds 2] [--threads 2]
 */
import { parseArgs } from "node:util";
import { startServer } from "@bitnet-ts/server";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    "system-tokens": { type: "string", default: "1000" },
    rounds: { type: "string", default: "2" },
    threads: { type: "string" },
    "max-tokens": { type: "string", default: "16" },
  },
});
const model = positionals[0];
if (model === undefined) {
  console.error(
    "usage: pnpm bench:prompt-cache model.gguf [--system-tokens 1000] [--rounds 2] [--threads N]",
  );
  process.exit(1);
}
const systemTokens = Number(values["system-tokens"]);
const maxTokens = Number(values["max-tokens"]);
const server = await startServer({
  model,
  port: 0,
  parallel: 2,
  contextLength: systemTokens + 256,
  ...(values.threads === undefined ? {} : { threads: Number(values.threads) }),
  onLog: (line) => console.error(`server: ${line}`),
});
await server.ready;

async function tokenCount(text: string): Promise<number> {
  const r = await fetch(`${server.url}/tokenize`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ content: text, add_special: false }),
  });
  return ((await r.json()) as { tokens: number[] }).tokens.length;
}

/** A deterministic shop manual of about `tokens` tokens (seeded, different per round). */
async function systemPrompt(tokens: number, seed: number): Promise<string> {
  const items = ["bell", "tyre", "chain", "saddle", "pedal", "lamp", "lock", "pump", "helmet"];
  const colours = ["red", "blue", "green", "black", "silver", "orange", "white"];
  let state = seed >>> 0 || 1;
  const next = (n: number): number => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state % n;
  };
  const lines = ["You are the support assistant of a bicycle shop. Use only the price list below."];
  let text = lines.join("\n");
  while ((await tokenCount(text)) < tokens) {
    for (let i = 0; i < 20; i++) {
      const item = items[next(items.length)]!;
      lines.push(
        `- ${colours[next(colours.length)]} ${item} model ${100 + next(900)}: ${5 + next(95)}.${next(10)}9 euros, ${next(40)} in stock, aisle ${1 + next(12)}.`,
      );
    }
    text = lines.join("\n");
  }
  while (lines.length > 1 && (await tokenCount(lines.join("\n"))) > tokens) {
    lines.pop();
  }
  return lines.join("\n");
}

interface Measured {
  readonly ttftMs: number;
  readonly text: string;
  readonly promptTokens: number;
  readonly cachedTokens: number;
}

async function ask(system: string, question: string, cachePrompt: boolean): Promise<Measured> {
  const started = performance.now();
  const r = await fetch(`${server.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      messages: [
        { role: "system", content: system },
        { role: "user", content: question },
      ],
      max_tokens: maxTokens,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
      cache_prompt: cachePrompt,
    }),
  });
  if (!r.ok || r.body === null) {
    throw new Error(`request failed: ${r.status} ${await r.text()}`);
  }
  let ttftMs: number | undefined;
  let text = "";
  let usage:
    | { prompt_tokens: number; prompt_tokens_details: { cached_tokens: number } }
    | undefined;
  let buffered = "";
  const decoder = new TextDecoder();
  for await (const bytes of r.body) {
    buffered += decoder.decode(bytes as Uint8Array, { stream: true });
    let end = buffered.indexOf("\n\n");
    while (end >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      end = buffered.indexOf("\n\n");
      const data = event.replace(/^data: /, "");
      if (data === "[DONE]") {
        continue;
      }
      const chunk = JSON.parse(data) as {
        choices: { delta: { content?: string }; finish_reason: string | null }[];
        usage?: typeof usage;
      };
      const piece = chunk.choices[0]?.delta.content;
      // The first generated token: a chunk with text, or the end when the reply is empty.
      if ((piece !== undefined && piece.length > 0) || chunk.choices[0]?.finish_reason) {
        ttftMs ??= performance.now() - started;
      }
      text += piece ?? "";
      usage = chunk.usage ?? usage;
    }
  }
  return {
    ttftMs: ttftMs ?? performance.now() - started,
    text,
    promptTokens: usage?.prompt_tokens ?? 0,
    cachedTokens: usage?.prompt_tokens_details.cached_tokens ?? 0,
  };
}

// Warm-up (first-step costs, page faults of the weights) on a prompt that shares nothing.
await ask("Be brief.", "Hello?", false);

const rows: string[] = [];
let identical = true;
const ratios: number[] = [];
for (let round = 1; round <= Number(values.rounds); round++) {
  const system = await systemPrompt(systemTokens, round * 7919);
  const cold = await ask(system, "How much is the cheapest bell?", true);
  const shared = await ask(system, "Which lamps are in stock?", true);
  const repeat = await ask(system, "How much is the cheapest bell?", true);
  const control = await ask(system, "Which lamps are in stock?", false);
  identical &&= shared.text === control.text && repeat.text === cold.text;
  ratios.push(shared.ttftMs / cold.ttftMs);
  for (const [name, m] of [
    ["cold", cold],
    ["shared system prompt", shared],
    ["repeat", repeat],
    ["control (cache_prompt: false)", control],
  ] as const) {
    rows.push(
      `| ${round} | ${name} | ${m.promptTokens} | ${m.cachedTokens} | ${m.ttftMs.toFixed(0)} | ${((100 * m.ttftMs) / cold.ttftMs).toFixed(1)}% |`,
    );
    console.error(
      `round ${round} ${name}: ${m.promptTokens} prompt tokens, ${m.cachedTokens} cached, TTFT ${m.ttftMs.toFixed(0)} ms`,
    );
  }
}
console.log("| round | request | prompt tokens | cached tokens | TTFT ms | vs cold |");
console.log("| ----: | ------- | ------------: | ------------: | ------: | ------: |");
for (const row of rows) {
  console.log(row);
}
console.log(
  `\nshared/cold TTFT: ${ratios.map((r) => `${(100 * r).toFixed(1)}%`).join(", ")} (target ≤ 10%); cached and uncached replies ${identical ? "identical" : "DIFFER"}`,
);
await server.close();
process.exitCode = identical ? 0 : 1;
