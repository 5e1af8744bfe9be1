import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import autocannon from "autocannon";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BitnetServer, startServer } from "./server";
import { hashKey } from "./tenants";
import { registerGatedReference } from "./test-backends";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bitnet-server-"));
const model = path.join(tmp, "tiny-i2s.gguf");
const KEY = "sk-test-key";
let server: BitnetServer;
let client: OpenAI;

beforeAll(async () => {
  await writeFixture(PRESETS["tiny-i2s"]!, model);
  server = await startServer({
    model,
    port: 0,
    parallel: 4,
    maxQueue: 32,
    apiKeys: [KEY],
    contextLength: 256,
    threads: 2,
  });
  await server.ready;
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  await server?.close({ graceMs: 1000 });
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** The fields these tests read from JSON responses. */
interface ResponseBody {
  error: { type: string; code: string | null; message: string; param: string | null };
  tokens: { id: number; piece: string }[];
  content: string;
  usage: { completion_tokens: number };
  choices: { finish_reason: string }[];
}

async function post(route: string, body: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(`${server.url}${route}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${KEY}`, ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return {
    status: r.status,
    headers: r.headers,
    json: (await r.json().catch(() => undefined)) as ResponseBody,
  };
}

async function metricOf(url: string, name: string): Promise<number> {
  const text = await (
    await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })
  ).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return Number(line?.split(" ")[1]);
}

function metric(name: string): Promise<number> {
  return metricOf(server.url, name);
}

/** Live sequences that the prompt cache does not hold: those of running requests (or leaks). */
async function uncached(): Promise<number> {
  return (await metric("bitnet_live_sequences")) - (await metric("bitnet_prompt_cache_entries"));
}

/** The rest of a response body as text. */
async function readRest(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<string> {
  let text = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) {
      return text;
    }
    text += new TextDecoder().decode(value);
  }
}

/** Polls until `condition` holds (or fails the test after ~10 s). */
async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await condition()) {
      return;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const hello = [{ role: "user" as const, content: "Hello, who are you?" }];

describe("OpenAI SDK", () => {
  it("chat completions: the response shape, usage, finish_reason", async () => {
    const r = await client.chat.completions.create({
      model: "tiny-i2s",
      messages: hello,
      max_tokens: 6,
      seed: 3,
    });
    expect(r.id).toMatch(/^chatcmpl-/);
    expect(r.object).toBe("chat.completion");
    expect(r.model).toBe("tiny-i2s");
    expect(r.choices[0]!.message.role).toBe("assistant");
    expect(r.choices[0]!.message.content!.length).toBeGreaterThan(0);
    expect(r.choices[0]!.finish_reason).toBe("length");
    expect(r.usage!.completion_tokens).toBe(6);
    expect(r.usage!.total_tokens).toBe(r.usage!.prompt_tokens + 6);
  });

  it("streams chat chunks that add up to the same text, with usage last, then [DONE]", async () => {
    const once = await client.chat.completions.create({
      model: "m",
      messages: hello,
      max_tokens: 8,
      seed: 11,
      temperature: 0.9,
    });
    const stream = await client.chat.completions.create({
      model: "m",
      messages: hello,
      max_tokens: 8,
      seed: 11,
      temperature: 0.9,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
    }
    expect(chunks[0]!.choices[0]!.delta.role).toBe("assistant");
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
    expect(text).toBe(once.choices[0]!.message.content);
    const finish = chunks.at(-2)!;
    expect(finish.choices[0]!.finish_reason).toBe("length");
    const usage = chunks.at(-1)!;
    expect(usage.choices).toEqual([]);
    expect(usage.usage!.completion_tokens).toBe(8);
  });

  it("completions, plain and streamed, from text or token ids", async () => {
    const r = await client.completions.create({
      model: "m",
      prompt: "The capital of France is",
      max_tokens: 5,
      temperature: 0,
    });
    expect(r.object).toBe("text_completion");
    expect(r.id).toMatch(/^cmpl-/);
    expect(r.choices[0]!.text.length).toBeGreaterThan(0);
    const ids = await client.completions.create({
      model: "m",
      prompt: [128000, 791, 6864, 315, 9822, 374],
      max_tokens: 5,
      temperature: 0,
    });
    expect(ids.choices[0]!.text).toBe(r.choices[0]!.text);
    const stream = await client.completions.create({
      model: "m",
      prompt: "The capital of France is",
      max_tokens: 5,
      temperature: 0,
      stream: true,
    });
    let text = "";
    for await (const c of stream) {
      text += c.choices[0]?.text ?? "";
    }
    expect(text).toBe(r.choices[0]!.text);
  });

  it("lists the model", async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(["tiny-i2s"]);
  });

  it("surfaces errors as the SDK's typed errors", async () => {
    await expect(
      client.chat.completions.create({ model: "m", messages: hello, temperature: 5 }),
    ).rejects.toMatchObject({
      status: 400,
      param: "temperature",
    });
    await expect(
      client.chat.completions.create({ model: "m", messages: hello, temperature: 5 }),
    ).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    const wrongKey = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "sk-wrong", maxRetries: 0 });
    await expect(wrongKey.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    const long = "word ".repeat(400);
    await expect(
      client.completions.create({ model: "m", prompt: long, max_tokens: 4 }),
    ).rejects.toMatchObject({
      status: 400,
      code: "context_length_exceeded",
    });
  });
});

describe("context limits", () => {
  it.each([
    ["/v1/completions", { prompt: [128000, 791, 6864], max_tokens: 254 }, "max_tokens", 3],
    [
      "/v1/chat/completions",
      { messages: [{ role: "user", content: "Hi" }], max_completion_tokens: 300 },
      "max_completion_tokens",
      undefined,
    ],
  ] as const)(
    "%s: prompt + %o beyond the context is a 400 that says the numbers",
    async (route, body, param, promptTokens) => {
      const r = await post(route, body);
      expect(r.status).toBe(400);
      const error = r.json.error as ResponseBody["error"] & Record<string, unknown>;
      expect(error).toMatchObject({
        type: "invalid_request_error",
        code: "context_length_exceeded",
        param,
        n_ctx: 256,
      });
      const n = error["n_prompt_tokens"] as number;
      if (promptTokens !== undefined) {
        expect(n).toBe(promptTokens);
      }
      const asked = (body as unknown as Record<string, number>)[param]!;
      expect(error[param]).toBe(asked);
      expect(error.message).toContain(
        `the context holds 256 tokens, but ${n + asked} were requested (${n} in the prompt, ${asked} in ${param})`,
      );
      expect(error.message).toContain(`at most ${256 - n}`);
    },
  );

  it("a max_tokens that just fits is served", async () => {
    const r = await post("/v1/completions", {
      prompt: [128000, 791, 6864],
      max_tokens: 253,
      temperature: 0,
    });
    expect(r.status).toBe(200);
  });
});

describe("bad requests get 4xx with an OpenAI error body, never a crash", () => {
  const cases: [string, string, unknown, number, string | null][] = [
    ["invalid JSON", "/v1/chat/completions", "{nope", 400, "invalid_json"],
    ["a body that is not an object", "/v1/chat/completions", "[1,2]", 400, "invalid_body"],
    ["messages as a string", "/v1/chat/completions", { messages: "hi" }, 400, "invalid_value"],
    ["missing messages", "/v1/chat/completions", { model: "m" }, 400, "missing_required_parameter"],
    [
      "an unknown role",
      "/v1/chat/completions",
      { messages: [{ role: "wizard", content: "x" }] },
      400,
      "invalid_value",
    ],
    ["empty messages", "/v1/chat/completions", { messages: [] }, 400, "invalid_value"],
    [
      "a user message without content",
      "/v1/chat/completions",
      { messages: [{ role: "user" }] },
      400,
      "invalid_value",
    ],
    [
      "non-string content",
      "/v1/chat/completions",
      { messages: [{ role: "user", content: 42 }] },
      400,
      "invalid_value",
    ],
    [
      "top_p above 1",
      "/v1/chat/completions",
      { messages: hello, top_p: 1.5 },
      400,
      "invalid_value",
    ],
    [
      "max_tokens 0",
      "/v1/chat/completions",
      { messages: hello, max_tokens: 0 },
      400,
      "invalid_value",
    ],
    ["n = 2", "/v1/chat/completions", { messages: hello, n: 2 }, 400, "invalid_value"],
    [
      "tools",
      "/v1/chat/completions",
      { messages: hello, tools: [{ type: "function" }] },
      400,
      "invalid_value",
    ],
    [
      "five stop strings",
      "/v1/chat/completions",
      { messages: hello, stop: ["a", "b", "c", "d", "e"] },
      400,
      "invalid_value",
    ],
    [
      "an out-of-vocabulary prompt id",
      "/v1/completions",
      { prompt: [1, 999999] },
      400,
      "invalid_token",
    ],
    [
      "a logit_bias for a missing token",
      "/v1/completions",
      { prompt: "x", logit_bias: { "999999": 1 } },
      400,
      "invalid_token",
    ],
    ["two prompts", "/v1/completions", { prompt: ["a", "b"] }, 400, "invalid_value"],
    [
      "an out-of-vocabulary id to detokenize",
      "/detokenize",
      { tokens: [5, 10_000_000] },
      400,
      "invalid_token",
    ],
    ["negative ids to detokenize", "/detokenize", { tokens: [-1] }, 400, "invalid_token"],
    // llama-server's fields that would change the output, which we cannot honour.
    [
      "a grammar",
      "/v1/completions",
      { prompt: "x", grammar: 'root ::= "a"' },
      400,
      "invalid_value",
    ],
    [
      "a JSON schema",
      "/v1/chat/completions",
      { messages: hello, json_schema: { type: "object" } },
      400,
      "invalid_value",
    ],
    ["mirostat 2", "/v1/completions", { prompt: "x", mirostat: 2 }, 400, "invalid_value"],
    ["n_probs 5", "/v1/completions", { prompt: "x", n_probs: 5 }, 400, "invalid_value"],
    ["n_predict 0", "/v1/completions", { prompt: "x", n_predict: 0 }, 400, "invalid_value"],
    [
      "n_predict and max_tokens that disagree",
      "/v1/completions",
      { prompt: "x", n_predict: 3, max_tokens: 4 },
      400,
      "invalid_value",
    ],
  ];
  it.each(cases)("%s", async (_what, route, body, status, code) => {
    const r = await post(route, body);
    expect(r.status).toBe(status);
    expect(r.json.error.type).toBe("invalid_request_error");
    expect(r.json.error.code).toBe(code);
    expect(typeof r.json.error.message).toBe("string");
    expect("param" in r.json.error).toBe(true);
  });

  it("a body over the limit is 413, a wrong content type 415, an unknown route 404", async () => {
    expect((await post("/v1/completions", { prompt: "x".repeat(2 << 20) })).status).toBe(413);
    const r = await fetch(`${server.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "text/plain", authorization: `Bearer ${KEY}` },
      body: "hi",
    });
    expect(r.status).toBe(415);
    expect((await post("/v1/nothing", {})).status).toBe(404);
  });

  it("a known route asked with another method is 405 naming the allowed one", async () => {
    const r = await fetch(`${server.url}/v1/chat/completions`, {
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect(r.status).toBe(405);
    expect(r.headers.get("allow")).toBe("POST");
    expect(((await r.json()) as ResponseBody).error.code).toBe("method_not_allowed");
  });

  it("takes llama-server's n_predict as max_tokens, and its neutral sampler values", async () => {
    for (const extra of [
      { n_predict: 3 },
      { n_predict: 3, max_tokens: 3, mirostat: 0, grammar: "" },
    ]) {
      const r = await post("/v1/completions", {
        prompt: "one two",
        temperature: 0,
        ignore_eos: true,
        ...extra,
      });
      expect(r.status, JSON.stringify(r.json)).toBe(200);
      expect(r.json.usage.completion_tokens).toBe(3);
      expect(r.json.choices[0]?.finish_reason).toBe("length");
    }
  });

  it("checks the API key (Bearer or X-Api-Key) except on /health", async () => {
    expect((await post("/tokenize", { content: "hi" }, { authorization: "" })).status).toBe(401);
    expect(
      (await post("/tokenize", { content: "hi" }, { authorization: "Bearer nope" })).status,
    ).toBe(401);
    expect(
      (await post("/tokenize", { content: "hi" }, { authorization: "", "x-api-key": KEY })).status,
    ).toBe(200);
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    expect(await (await fetch(`${server.url}/health`)).json()).toEqual({ status: "ok" });
  });

  it("tokenizes and detokenizes", async () => {
    const t = await post("/tokenize", { content: "Hello world", with_pieces: true });
    expect(t.json.tokens.map((x) => x.piece).join("")).toBe("Hello world");
    const d = await post("/detokenize", { tokens: t.json.tokens.map((x) => x.id) });
    expect(d.json.content).toBe("Hello world");
  });
});

describe("batching", () => {
  it("same seed gives the same text alone and with other requests in the batch", {
    timeout: 60_000,
  }, async () => {
    const ask = (seed: number) =>
      client.chat.completions
        .create({ model: "m", messages: hello, max_tokens: 12, seed, temperature: 1 })
        .then((r) => r.choices[0]!.message.content);
    const alone = await ask(99);
    const together = await Promise.all([ask(99), ask(5), ask(99), ask(6), ask(99), ask(7)]);
    expect(together[0]).toBe(alone);
    expect(together[2]).toBe(alone);
    expect(together[4]).toBe(alone);
  });

  it("cancels a stream when its client disconnects and frees the sequence", {
    timeout: 60_000,
  }, async () => {
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      { model: "m", messages: hello, max_tokens: 200, stream: true, ignore_eos: true } as never,
      { signal: controller.signal },
    );
    let n = 0;
    try {
      for await (const _chunk of stream as unknown as AsyncIterable<unknown>) {
        if (++n === 3) {
          controller.abort();
        }
      }
    } catch {
      // aborted
    }
    // The sequences left are the prompt cache's (the cancelled one was handed to it or freed).
    for (
      let i = 0;
      i < 50 && ((await uncached()) > 0 || (await metric("bitnet_busy_slots")) > 0);
      i++
    ) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await uncached()).toBe(0);
    expect(await metric("bitnet_busy_slots")).toBe(0);
  });

  it("serves a load test without a failed request (300 requests, 16 connections)", {
    timeout: 120_000,
  }, async () => {
    const result = await autocannon({
      url: `${server.url}/v1/completions`,
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ prompt: "Once upon a time", max_tokens: 4, temperature: 0.7 }),
      connections: 16,
      amount: 300,
    });
    expect(result.errors).toBe(0);
    expect(result.timeouts).toBe(0);
    expect(result.non2xx).toBe(0);
    expect(result.requests.sent).toBeGreaterThanOrEqual(300);
    expect(await uncached()).toBe(0);
    expect(await metric("bitnet_prompt_cache_entries")).toBeLessThanOrEqual(64);
  });
});

describe("the bounded queue", () => {
  it("answers 503 with Retry-After when the queue is full, and recovers", {
    timeout: 60_000,
  }, async () => {
    const small = await startServer({
      model,
      port: 0,
      parallel: 1,
      maxQueue: 1,
      contextLength: 256,
    });
    await small.ready;
    const ask = () =>
      fetch(`${small.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: "Once", max_tokens: 40, ignore_eos: true }),
      });
    const responses = await Promise.all([ask(), ask(), ask(), ask()]);
    const statuses = responses.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(2);
    const refused = responses.find((r) => r.status === 503)!;
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("queue_full");
    expect((await ask()).status).toBe(200);
    await small.close();
  });
});

describe("while the model loads", () => {
  it("listens at once and answers 503 until the backend's compile finishes, then 200", {
    timeout: 60_000,
  }, async () => {
    const gated = registerGatedReference("gated-reference", { compileOpen: false });
    const loading = await startServer({
      model,
      port: 0,
      contextLength: 256,
      backend: "gated-reference",
    });
    let loaded = false;
    void loading.ready.then(() => {
      loaded = true;
    });
    await gated.compiling; // the backend is compiling the model: a load is really in progress
    const health = await fetch(`${loading.url}/health`);
    expect(health.status).toBe(503);
    expect(await health.json()).toEqual({
      error: { code: 503, message: "Loading model", type: "unavailable_error" },
    });
    const chat = await fetch(`${loading.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: hello, max_tokens: 2 }),
    });
    expect(chat.status).toBe(503);
    expect(chat.headers.get("retry-after")).toBe("1");
    expect(((await chat.json()) as ResponseBody).error).toMatchObject({
      message: "Loading model",
      code: "loading",
    });
    const models = (await (await fetch(`${loading.url}/v1/models`)).json()) as {
      data: { id: string; meta?: unknown }[];
    };
    expect(models.data[0]!.id).toBe("tiny-i2s");
    expect(models.data[0]!.meta).toBeUndefined(); // nothing to describe yet
    expect(loaded).toBe(false);

    gated.compile.open();
    await loading.ready;
    expect((await fetch(`${loading.url}/health`)).status).toBe(200);
    const after = await fetch(`${loading.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "Once", max_tokens: 2 }),
    });
    expect(after.status).toBe(200);
    await loading.close();
  });
});

describe("prompt cache", () => {
  const system = {
    role: "system" as const,
    content:
      "You are the support assistant of a bicycle shop. Answer briefly, quote the price list when asked about prices, and never promise delivery dates.",
  };
  const ask = (question: string, extra: Record<string, unknown> = {}) =>
    client.chat.completions.create({
      model: "m",
      messages: [system, { role: "user", content: question }],
      max_tokens: 8,
      temperature: 0,
      ...extra,
    } as never) as unknown as Promise<OpenAI.Chat.ChatCompletion>;
  const cachedTokens = (r: OpenAI.Chat.ChatCompletion) =>
    r.usage!.prompt_tokens_details!.cached_tokens!;

  it("reuses a shared system prompt's KV cache and answers as without it", async () => {
    const hitsBefore = await metric("bitnet_prompt_cache_hits_total");
    const reusedBefore = await metric("bitnet_prompt_cache_reused_tokens_total");
    const uncachedReply = await ask("How much is a bell?", { cache_prompt: false });
    expect(cachedTokens(uncachedReply)).toBe(0);
    const first = await ask("How much is a bell?");
    const second = await ask("Do you repair tyres?");
    const again = await ask("How much is a bell?");
    expect(first.choices[0]!.message.content).toBe(uncachedReply.choices[0]!.message.content);
    // The system prompt (at least) came from the cache: shared with the first question.
    const systemOnly = (await post("/tokenize", { content: system.content, add_special: false }))
      .json.tokens.length;
    expect(cachedTokens(second)).toBeGreaterThanOrEqual(systemOnly);
    expect(cachedTokens(again)).toBe(again.usage!.prompt_tokens - 1);
    expect(again.choices[0]!.message.content).toBe(first.choices[0]!.message.content);
    expect(await metric("bitnet_prompt_cache_hits_total")).toBeGreaterThanOrEqual(hitsBefore + 2);
    expect(await metric("bitnet_prompt_cache_reused_tokens_total")).toBe(
      reusedBefore + cachedTokens(first) + cachedTokens(second) + cachedTokens(again),
    );
    expect(await metric("bitnet_prompt_cache_bytes")).toBeGreaterThan(0);
  });
});

describe("speculative decoding", () => {
  it("a server drafting with prompt lookup answers greedy requests exactly as one without", {
    timeout: 60_000,
  }, async () => {
    const drafting = await startServer({ model, port: 0, contextLength: 256, draft: "lookup" });
    await drafting.ready;
    const other = new OpenAI({ baseURL: `${drafting.url}/v1`, apiKey: "none", maxRetries: 0 });
    const passage = "the quick brown fox jumps over the lazy dog while the cat sleeps";
    for (const prompt of [`${passage}. ${passage}. ${passage}.`, "Once upon a time"]) {
      const body = { model: "m", prompt, max_tokens: 24, temperature: 0, ignore_eos: true };
      const want = await client.completions.create(body);
      const got = await other.completions.create(body);
      expect(got.choices[0]!.text).toBe(want.choices[0]!.text);
      expect(got.usage!.completion_tokens).toBe(24);
    }
    await drafting.close();
  });
});

describe("tenants", () => {
  it("limits each key, logs its usage, and reloads keys without dropping a stream", {
    timeout: 90_000,
  }, async () => {
    const dir = fs.mkdtempSync(path.join(tmp, "tenants-"));
    const file = path.join(dir, "tenants.json");
    const usageLog = path.join(dir, "usage.jsonl");
    const write = (tenants: unknown[]) => fs.writeFileSync(file, JSON.stringify({ tenants }));
    const keys = { limited: "sk-limited-1", free: "sk-free-1", newbie: "sk-newbie-1" };
    write([
      {
        name: "limited",
        key_sha256: hashKey(keys.limited),
        limits: { requests_per_minute: 3, concurrent_streams: 1 },
      },
      { name: "free", key_sha256: hashKey(keys.free) },
    ]);
    const s = await startServer({
      model,
      port: 0,
      contextLength: 256,
      tenantsFile: file,
      usageLog,
    });
    await s.ready;
    const as = (key: string) => new OpenAI({ baseURL: `${s.url}/v1`, apiKey: key, maxRetries: 0 });
    const complete = (key: string, extra: Record<string, unknown> = {}) =>
      as(key).completions.create({
        model: "m",
        prompt: "Once upon a time",
        max_tokens: 4,
        ...extra,
      } as never) as unknown as Promise<OpenAI.Completion>;
    const labelled = async (name: string, labels: string) => {
      const text = await (
        await fetch(`${s.url}/metrics`, { headers: { authorization: `Bearer ${keys.newbie}` } })
      ).text();
      const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
      return line === undefined ? 0 : Number(line.split(" ").at(-1));
    };

    // A stream of "limited" holds its only concurrent slot…
    const stream = await fetch(`${s.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${keys.limited}` },
      body: JSON.stringify({ prompt: "Once", max_tokens: 40, stream: true, ignore_eos: true }),
    });
    const reader = stream.body!.getReader();
    let body = new TextDecoder().decode((await reader.read()).value);
    // …so its next request is a 429 the SDK types, with Retry-After; other keys are not slowed.
    const busy = await complete(keys.limited).catch((e: unknown) => e);
    expect(busy).toBeInstanceOf(OpenAI.RateLimitError);
    const busyError = busy as InstanceType<typeof OpenAI.RateLimitError>;
    expect(busyError.headers?.get("retry-after")).toBe("1");
    expect(busyError.code).toBe("rate_limit_exceeded");
    expect(busyError.message).toContain("concurrent");
    expect((await complete(keys.free)).choices[0]!.text).toBeTypeOf("string");

    // Reload while the stream runs: "free" removed, "newbie" added, "limited" kept.
    write([
      {
        name: "limited",
        key_sha256: hashKey(keys.limited),
        limits: { requests_per_minute: 3, concurrent_streams: 1 },
      },
      { name: "newbie", key_sha256: hashKey(keys.newbie), limits: { tokens_per_minute: 1000 } },
    ]);
    expect(s.reloadTenants()).toEqual({ tenants: 2 });
    await expect(complete(keys.free)).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    expect((await complete(keys.newbie)).usage!.completion_tokens).toBe(4);
    // The stream was not dropped by the reload.
    body += await readRest(reader);
    expect(body.trim().endsWith("data: [DONE]")).toBe(true);
    expect(body).toContain('"finish_reason":"length"');

    // A file that cannot be used is refused and the keys in force stay.
    fs.writeFileSync(file, "{ not json");
    expect(() => s.reloadTenants()).toThrow(/not JSON/);
    // Requests per minute: the stream was the first of 3.
    await complete(keys.limited);
    await complete(keys.limited);
    const tooMany = (await complete(keys.limited).catch((e: unknown) => e)) as InstanceType<
      typeof OpenAI.RateLimitError
    >;
    expect(tooMany).toBeInstanceOf(OpenAI.RateLimitError);
    expect(Number(tooMany.headers?.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(tooMany.message).toContain("3 requests per minute");

    const limited = 'tenant="limited"';
    expect(await labelled("bitnet_tenant_requests_total", `${limited},status="200"`)).toBe(3);
    expect(await labelled("bitnet_tenant_requests_total", `${limited},status="429"`)).toBe(2);
    expect(
      await labelled("bitnet_tenant_rate_limited_total", `${limited},limit="concurrent_streams"`),
    ).toBe(1);
    expect(
      await labelled("bitnet_tenant_rate_limited_total", `${limited},limit="requests_per_minute"`),
    ).toBe(1);
    expect(await labelled("bitnet_tenant_generated_tokens_total", limited)).toBe(48);
    expect(await labelled("bitnet_tenant_active_requests", limited)).toBe(0);
    await s.close();

    // The usage log: one JSON line per request, refusals included.
    const lines = fs
      .readFileSync(usageLog, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(7); // 5 of "limited", 1 of "free", 1 of "newbie" (a 401 has no tenant)
    const mine = lines.filter((l) => l["tenant"] === "limited");
    expect(mine.map((l) => l["status"]).sort()).toEqual([200, 200, 200, 429, 429]);
    expect(mine.find((l) => l["completion_tokens"] === 40)).toMatchObject({
      route: "/v1/completions",
      finish_reason: "length",
      model: "tiny-i2s",
    });
    expect(mine.filter((l) => l["status"] === 429).map((l) => l["limit"])).toEqual([
      "concurrent_streams",
      "requests_per_minute",
    ]);
    expect(lines.filter((l) => l["tenant"] === "free").map((l) => l["status"])).toEqual([200]);
  });
});

describe("admission by KV capacity", () => {
  it("queues a request whose KV cache does not fit beside a running one, though slots are free", {
    timeout: 60_000,
  }, async () => {
    // A KV budget of 100 tokens; every step waits until the test opens the gate.
    const kv = registerGatedReference("kv-limited-reference", {
      stepOpen: false,
      kvBudgetTokens: 100,
    });
    const small = await startServer({
      model,
      port: 0,
      parallel: 4,
      maxQueue: 8,
      contextLength: 256,
      backend: "kv-limited-reference",
      cacheBytes: 0,
    });
    await small.ready;
    const m = (name: string) => metricOf(small.url, name);
    const budget = await m("bitnet_kv_budget_bytes");
    const perToken = budget / 100;
    expect(perToken).toBeGreaterThan(0);
    const ask = (maxTokens: number) =>
      fetch(`${small.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        // 3 prompt tokens + max_tokens of KV cache each.
        body: JSON.stringify({
          prompt: [128000, 791, 6864],
          max_tokens: maxTokens,
          ignore_eos: true,
        }),
      });

    const first = ask(60); // 63 tokens of 100
    await until(async () => (await m("bitnet_busy_slots")) === 1, "the first request to run");
    const second = ask(60); // 63 more do not fit beside it
    await until(async () => (await m("bitnet_queue_depth")) === 1, "the second request to wait");
    expect(await m("bitnet_busy_slots")).toBe(1);
    expect(await m("bitnet_slots")).toBe(4); // a slot was free: it waits for KV
    expect(await m("bitnet_kv_reserved_bytes")).toBe(63 * perToken);

    // A request that could never fit, even alone: a 400 with the numbers.
    const huge = await ask(200);
    expect(huge.status).toBe(400);
    const error = ((await huge.json()) as { error: Record<string, unknown> }).error;
    expect(error).toMatchObject({
      type: "invalid_request_error",
      code: "kv_budget_exceeded",
      param: "max_tokens",
      kv_bytes_needed: 203 * perToken,
      kv_budget_bytes: budget,
    });
    expect(error["message"]).toContain(`${203 * perToken} bytes of KV cache`);
    expect(error["message"]).toContain(`KV budget is ${budget} bytes`);

    kv.step.open();
    expect((await first).status).toBe(200);
    expect((await second).status).toBe(200);
    expect(await m("bitnet_kv_reserved_bytes")).toBe(0);
    expect(await m("bitnet_queue_depth")).toBe(0);
    await small.close();
  });
});

describe("listening", () => {
  it("a port in use or a host that does not resolve is a ServerListenError that says so", async () => {
    const port = Number(new URL(server.url).port);
    await expect(startServer({ model, port })).rejects.toMatchObject({
      code: "SERVER_LISTEN",
      message: expect.stringContaining(`127.0.0.1:${port} - the port is in use`),
    });
    await expect(
      startServer({ model, port: 0, host: "no-such-host.invalid" }),
    ).rejects.toMatchObject({
      code: "SERVER_LISTEN",
      message: expect.stringContaining("does not resolve"),
    });
  });
});

describe("bitnet serve", () => {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const BIN = path.resolve(here, "../../cli/dist/bitnet.js");

  it("bitnet tenants add writes hashed keys; SIGHUP takes new ones without a restart", {
    timeout: 60_000,
  }, async () => {
    const dir = fs.mkdtempSync(path.join(tmp, "sighup-"));
    const file = path.join(dir, "tenants.json");
    const add = (name: string, ...flags: string[]) => {
      const r = spawnSync(
        process.execPath,
        [BIN, "tenants", "add", file, "--name", name, ...flags],
        {
          encoding: "utf8",
        },
      );
      expect(r.status, r.stderr).toBe(0);
      return r.stdout.trim();
    };
    const first = add("team-a", "--rpm", "100", "--streams", "2");
    expect(first).toMatch(/^sk-bitnet-[\w-]{43}$/);
    const stored = fs.readFileSync(file, "utf8");
    expect(stored).not.toContain(first); // only its digest
    expect(stored).toContain(hashKey(first));
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    // A duplicate name is refused and the file is left as it was.
    const dup = spawnSync(process.execPath, [BIN, "tenants", "add", file, "--name", "team-a"], {
      encoding: "utf8",
    });
    expect(dup.status).not.toBe(0);
    expect(dup.stderr).toContain("has one of that name");
    expect(fs.readFileSync(file, "utf8")).toBe(stored);

    const port = 20000 + Math.floor(Math.random() * 20000);
    const child = spawn(
      process.execPath,
      [BIN, "serve", "-m", model, "--port", String(port), "-c", "256", "--tenants", file],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
    const url = `http://127.0.0.1:${port}`;
    await until(
      async () => (await fetch(`${url}/health`).catch(() => undefined))?.status === 200,
      "bitnet serve to load the model",
    );
    const models = (key: string) =>
      fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${key}` } }).then(
        (r) => r.status,
      );
    expect(await models(first)).toBe(200);
    const second = add("team-b", "--tpm", "5000");
    expect(await models(second)).toBe(401); // not before the reload
    child.kill("SIGHUP");
    await until(async () => (await models(second)) === 200, "SIGHUP to load the new key");
    expect(await models(first)).toBe(200);
    expect(stderr).toContain("tenants: 2 keys in force (team-a, team-b)");
    // Removing a key and reloading revokes it.
    expect(
      spawnSync(process.execPath, [BIN, "tenants", "remove", file, "team-a"], { encoding: "utf8" })
        .status,
    ).toBe(0);
    child.kill("SIGHUP");
    await until(async () => (await models(first)) === 401, "SIGHUP to drop the removed key");
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  });

  it("finishes an in-flight stream on SIGTERM and exits 0", {
    timeout: 60_000,
  }, async () => {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const child = spawn(
      process.execPath,
      [BIN, "serve", "-m", model, "--port", String(port), "-c", "256"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) =>
      child.on("exit", (code) => resolve(code)),
    );
    const url = `http://127.0.0.1:${port}`;
    // Ready when /health says ok (the load in progress is tested in-process, "while the model loads").
    await until(
      async () => (await fetch(`${url}/health`).catch(() => undefined))?.status === 200,
      "bitnet serve to load the model",
    );
    const response = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        prompt: "Once upon a time",
        max_tokens: 30,
        stream: true,
        ignore_eos: true,
      }),
    });
    const reader = response.body!.getReader();
    const first = await reader.read(); // the stream has started
    child.kill("SIGTERM");
    // A backend that never yields between steps may have sent the whole stream in that read.
    let body = new TextDecoder().decode(first.value);
    body += await readRest(reader);
    expect(body.trim().endsWith("data: [DONE]")).toBe(true);
    expect(body).toContain('"finish_reason":"length"');
    expect(await exited).toBe(0);
    expect(stderr).toContain("SIGTERM");
    await expect(fetch(`${url}/health`)).rejects.toThrow();
  });
});
