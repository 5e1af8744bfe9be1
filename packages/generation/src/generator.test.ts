import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { cleanup, fixture } from "../test/models";
import { ChatSession, type ContextShift } from "./chat";
import { TextGenerator } from "./generator";
import { evaluateLogits, perplexity } from "./tasks";

let generator: TextGenerator;

beforeAll(async () => {
  generator = await TextGenerator.load(await fixture("tiny-i2s"), {
    backend: "reference",
    contextLength: 128,
  });
}, 60_000);
afterAll(async () => {
  await generator.dispose();
  cleanup();
});

/**
 * The test model seen through a wrapper that records each run's reduction in `asked`, and with
 * `keep` false drops it (full logits, sampled on the host).
 */
function recordingModel(asked: unknown[], keep: boolean): TextGenerator["model"] {
  const model = generator.model;
  return new Proxy(model, {
    get(target, key, receiver) {
      if (key === "step") {
        return (runs: Parameters<typeof model.step>[0]) => {
          asked.push(...runs.map((r) => r.reduce));
          return target.step(keep ? runs : runs.map(({ reduce: _, ...r }) => r));
        };
      }
      const value = Reflect.get(target, key, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const piece of it) {
    out.push(piece);
  }
  return out;
}

describe("TextGenerator", () => {
  it("asks the backend only for the argmax when sampling is greedy, with the same tokens", async () => {
    const asked: unknown[] = [];
    const through = (keep: boolean) => recordingModel(asked, keep);
    const greedy = { maxTokens: 6, temperature: 0 };
    const reduced = await new TextGenerator(through(true), generator.tokenizer).generate(
      "The capital of France is",
      greedy,
    ).result;
    expect(asked.every((r) => r === "argmax")).toBe(true);
    const full = await new TextGenerator(through(false), generator.tokenizer).generate(
      "The capital of France is",
      greedy,
    ).result;
    expect(reduced.tokens).toEqual(full.tokens);
    asked.length = 0;
    // A repetition penalty can reorder the top: full rows are needed.
    await new TextGenerator(through(true), generator.tokenizer).generate("Hello", {
      maxTokens: 2,
      temperature: 0,
      repeatPenalty: 1.3,
    }).result;
    expect(asked.every((r) => r === "full")).toBe(true);
  });

  it("asks the backend for the sampler's top-k when sampling, with the tokens whole rows give", async () => {
    const asked: unknown[] = [];
    const through = (keep: boolean) => recordingModel(asked, keep);
    for (const sampling of [
      { maxTokens: 12, temperature: 1.5, seed: 99 },
      { maxTokens: 12, temperature: 0.7, topK: 3, topP: 0.8, minP: 0.1, seed: 5 },
    ]) {
      asked.length = 0;
      const reduced = await new TextGenerator(through(true), generator.tokenizer).generate(
        "Once upon a time",
        sampling,
      ).result;
      expect(asked).toContainEqual({ topK: sampling.topK ?? 40 });
      expect(asked.every((r) => typeof r === "object" && r !== null)).toBe(true);
      const full = await new TextGenerator(through(false), generator.tokenizer).generate(
        "Once upon a time",
        sampling,
      ).result;
      expect(reduced.tokens).toEqual(full.tokens);
      expect(reduced.tokens.length).toBeGreaterThan(3);
    }
  });

  it("streams the continuation and reports tokens, text and timings", async () => {
    const g = generator.generate("The capital of France is", { maxTokens: 8, temperature: 0 });
    const pieces = await collect(g);
    const r = await g.result;
    expect(r.finishReason).toBe("length");
    expect(r.tokens).toHaveLength(8);
    expect(pieces.join("")).toBe(r.text);
    expect(r.text).toBe(generator.tokenizer.decode(r.tokens));
    expect(r.promptTokens[0]).toBe(128000);
    expect(r.timings.generatedTokens).toBe(8);
    expect(r.timings.promptMs).toBeGreaterThan(0);
    expect(generator.model.sequenceCount).toBe(0);
  });

  it("stops on a stop string without emitting it", async () => {
    const free = await generator.generate("The capital of France is", {
      maxTokens: 12,
      temperature: 0,
    }).result;
    const words = free.text.split(" ").filter(Boolean);
    const stop = ` ${words[3]}`;
    const g = generator.generate("The capital of France is", {
      maxTokens: 12,
      temperature: 0,
      stop: [stop],
    });
    const r = await g.result;
    expect(r.finishReason).toBe("stop");
    expect(r.text).toBe(free.text.slice(0, free.text.indexOf(stop)));
  });

  it("stops on end-of-generation tokens unless told to ignore them", async () => {
    const eot = generator.tokenizer.eot!;
    const biased = await generator.generate("Hi", {
      maxTokens: 5,
      temperature: 0,
      logitBias: { [eot]: 1000 },
    }).result;
    expect(biased.finishReason).toBe("stop");
    expect(biased.tokens).toEqual([]);
    const ignored = await generator.generate("Hi", {
      maxTokens: 3,
      temperature: 0,
      logitBias: { [eot]: 1000 },
      ignoreEos: true,
    }).result;
    expect(ignored.tokens).toEqual([eot, eot, eot]);
  });

  it("aborts with an AbortSignal and frees the sequence", async () => {
    const controller = new AbortController();
    const g = generator.generate("Once upon a time", {
      maxTokens: 200,
      temperature: 0,
      signal: controller.signal,
    });
    let n = 0;
    for await (const _ of g) {
      if (++n === 3) {
        controller.abort();
      }
    }
    const r = await g.result;
    expect(r.finishReason).toBe("abort");
    expect(r.tokens.length).toBeLessThan(200);
    expect(generator.model.sequenceCount).toBe(0);
  });

  it("gives the same tokens for the same seed, alone or batched with other generations", async () => {
    const options = { maxTokens: 10, temperature: 0.9, topK: 50, seed: 1234 };
    const alone = await generator.generate("Once upon a time", options).result;
    const stepsBefore = generator.scheduler.steps;
    const [a, b, c] = await Promise.all([
      generator.generate("def fibonacci(n):", { maxTokens: 12, seed: 7 }).result,
      generator.generate("Once upon a time", options).result,
      generator.generate("The quick brown fox", { maxTokens: 4, temperature: 0 }).result,
    ]);
    expect(b.tokens).toEqual(alone.tokens);
    expect(b.seed).toBe(1234);
    expect(a.tokens.length + c.tokens.length).toBeGreaterThan(0);
    // Batched: far fewer steps than the 26 tokens generated.
    expect(generator.scheduler.steps - stepsBefore).toBeLessThan(20);
  });

  it("schedules steps without setImmediate (browsers have none), with the same tokens", async () => {
    const greedy = { maxTokens: 5, temperature: 0 };
    const node = await generator.generate("Once upon a time", greedy).result;
    vi.stubGlobal("setImmediate", undefined);
    try {
      const browser = await generator.generate("Once upon a time", greedy).result;
      expect(browser.tokens).toEqual(node.tokens);
    } finally {
      vi.unstubAllGlobals();
    }
  });

  it("rejects prompts longer than the context with the token counts", () => {
    expect(() => generator.generate(new Array(200).fill(1))).toThrowError(
      expect.objectContaining({
        code: "GENERATION_PROMPT_TOO_LONG",
        message: expect.stringContaining("200 tokens"),
      }),
    );
  });
});

describe("ChatSession", () => {
  it("renders the template, reuses the cache across turns and records the reply", async () => {
    const chat = new ChatSession(generator, { systemPrompt: "You are helpful." });
    const first = chat.prompt("Hi", { maxTokens: 6, temperature: 0 });
    const text = (await collect(first)).join("");
    const r1 = await first.result;
    expect(r1.text).toBe(text);
    expect(chat.messages.map((m) => m.role)).toEqual(["system", "user", "assistant"]);
    const r2 = await chat.prompt("And then?", { maxTokens: 6, temperature: 0 }).result;
    // Only the new part of the conversation was evaluated.
    expect(r2.timings.promptTokens).toBeLessThan(r2.promptTokens.length);
    expect(chat.messages).toHaveLength(5);
    chat.dispose();
    expect(generator.model.sequenceCount).toBe(0);
  });
});

describe("ChatSession context limits", () => {
  const turn = "Tell me about the house, the tree and the river by the old mill.";

  it("without contextShift, a message that leaves no room for the reply is rejected with the numbers and changes nothing", async () => {
    const chat = new ChatSession(generator, { systemPrompt: "You are helpful." });
    let error: unknown;
    for (let i = 0; i < 20 && error === undefined; i++) {
      try {
        await chat.prompt(turn, { maxTokens: 6, temperature: 0 }).result;
      } catch (e) {
        error = e;
      }
    }
    expect(error).toMatchObject({
      code: "GENERATION_PROMPT_TOO_LONG",
      message: expect.stringMatching(
        /the conversation would have \d+ tokens and the reply needs room for 6 more, but the context holds 128/,
      ),
    });
    const messages = chat.messages.length;
    expect(chat.messages.at(-1)!.role).toBe("assistant"); // the rejected message was not kept
    // The session is still usable.
    chat.reset();
    expect(chat.messages).toHaveLength(1);
    await chat.prompt("Hi", { maxTokens: 2, temperature: 0 }).result;
    expect(chat.messages).toHaveLength(3);
    expect(messages).toBeGreaterThan(3);
    chat.dispose();
  });

  it("with contextShift, the oldest turns are dropped (the system prompt stays), said through onContextShift, and the reply is what a fresh session on the kept turns gives", async () => {
    const shifts: ContextShift[] = [];
    const chat = new ChatSession(generator, {
      systemPrompt: "You are helpful.",
      contextShift: true,
      onContextShift: (shift) => shifts.push(shift),
    });
    let last = "";
    for (let i = 0; i < 12; i++) {
      last = (await chat.prompt(`${turn} (${i})`, { maxTokens: 6, temperature: 0 }).result).text;
    }
    expect(shifts.length).toBeGreaterThan(0);
    for (const shift of shifts) {
      expect(shift.droppedMessages % 2).toBe(0); // whole turns
      expect(shift.droppedMessages).toBeGreaterThan(0);
      expect(shift.tokensAfter + shift.reserved).toBeLessThanOrEqual(128);
      expect(shift.tokensBefore + shift.reserved).toBeGreaterThan(128);
      expect(shift.reserved).toBe(6);
    }
    expect(chat.messages[0]).toEqual({ role: "system", content: "You are helpful." });
    expect(chat.messages.at(-2)).toEqual({ role: "user", content: `${turn} (11)` });
    // The cache reused across the shift gives the same reply as evaluating the kept turns afresh.
    const fresh = new ChatSession(generator, {});
    fresh.messages.push(...chat.messages.slice(0, -2));
    const again = await fresh.prompt(`${turn} (11)`, { maxTokens: 6, temperature: 0 }).result;
    expect(again.text).toBe(last);
    fresh.dispose();
    chat.dispose();
    expect(generator.model.sequenceCount).toBe(0);
  });
});

describe("evaluation tasks", () => {
  it("evaluates teacher-forced logits identically in batch and sequential mode", async () => {
    const tokens = generator.tokenizer.encode("The quick brown fox jumps");
    const batch = await evaluateLogits(generator.model, tokens);
    const seq = await evaluateLogits(generator.model, tokens, { mode: "sequential" });
    expect(Buffer.compare(Buffer.from(batch.buffer), Buffer.from(seq.buffer))).toBe(0);
  });

  it("computes perplexity over chunks and rejects texts that are too short", {
    timeout: 60_000,
  }, async () => {
    const tokens = generator.tokenizer.encode("the house and the tree and the river ".repeat(12));
    const r = await perplexity(generator.model, tokens, {
      contextLength: 32,
      bos: generator.tokenizer.bos,
    });
    expect(r.chunks).toBe(Math.floor(tokens.length / 32));
    expect(r.scored).toBe(r.chunks * (32 - 1 - 16));
    expect(r.ppl).toBeGreaterThan(1);
    expect(Number.isFinite(r.error)).toBe(true);
    await expect(
      perplexity(generator.model, tokens.slice(0, 40), { contextLength: 32 }),
    ).rejects.toMatchObject({ code: "GENERATION_BAD_OPTION" });
  });
});
