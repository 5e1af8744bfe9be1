import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanup, fixture } from "../test/models";
import { TextGenerator } from "./generator";
import { PromptCache } from "./prompt-cache";

// One model, two generators on it: `cached` keeps a prompt cache, `plain` evaluates every prompt.
let plain: TextGenerator;
let cached: TextGenerator;

// Long enough that its tokens pass the default minReuse of 16.
const SYSTEM =
  "You are a careful assistant. Answer in one short sentence, name your sources, and never invent facts that the user did not give you. ";

beforeAll(async () => {
  plain = await TextGenerator.load(await fixture("tiny-i2s"), {
    backend: "reference",
    contextLength: 256,
  });
  cached = new TextGenerator(plain.model, plain.tokenizer, {
    promptCache: { maxBytes: 64 << 20 },
  });
}, 60_000);
afterAll(async () => {
  cached.promptCache?.clear();
  await plain.dispose();
  cleanup();
});

const greedy = { maxTokens: 8, temperature: 0, ignoreEos: true } as const;

describe("prompt cache", () => {
  it("reuses shared prefixes and gives the tokens of a full evaluation (greedy and sampled)", async () => {
    const cache = cached.promptCache!;
    const prompts = [
      `${SYSTEM}What is the capital of France?`,
      // Shares the system prompt with the first: a fork of its entry, cut to the common prefix.
      `${SYSTEM}Who wrote Hamlet?`,
      // The first again: everything but the last token comes from the cache.
      `${SYSTEM}What is the capital of France?`,
    ];
    const lengths: number[] = [];
    for (const [i, prompt] of prompts.entries()) {
      const tokens = cached.tokenizer.encode(prompt);
      lengths.push(tokens.length);
      for (const options of [greedy, { maxTokens: 8, temperature: 0.9, seed: 7 + i }]) {
        const want = await plain.generate(tokens, options).result;
        const got = await cached.generate(tokens, options).result;
        expect(got.tokens).toEqual(want.tokens);
        expect(got.text).toBe(want.text);
        if (i === 0 && options === greedy) {
          expect(got.cachedTokens).toBe(0);
        } else {
          expect(got.cachedTokens).toBeGreaterThanOrEqual(16);
          expect(got.timings.promptTokens).toBe(tokens.length - got.cachedTokens);
        }
      }
    }
    const systemTokens = cached.tokenizer.encode(SYSTEM).length;
    const second = await cached.generate(cached.tokenizer.encode(prompts[1]!), greedy).result;
    expect(second.cachedTokens).toBe(lengths[1]! - 1);
    expect(systemTokens).toBeGreaterThanOrEqual(16);
    const stats = cache.stats();
    expect(stats.hits).toBeGreaterThanOrEqual(5);
    expect(stats.bytes).toBeLessThanOrEqual(stats.maxBytes);
    // No sequence leaks: the model holds exactly the cached ones.
    expect(cached.model.sequenceCount).toBe(stats.entries);
  });

  it("hands over an entry that a longer prompt extends (a chat's next turn) without a copy", async () => {
    const first = await cached.generate(`${SYSTEM}Tell me a story.`, greedy).result;
    const history = [...first.promptTokens, ...first.tokens];
    const entriesBefore = cached.promptCache!.stats().entries;
    const next = [...history, ...cached.tokenizer.encode(" And then?", { addBos: false })];
    const got = await cached.generate(next, greedy).result;
    // Everything evaluated before is reused: the prompt, and the reply but its last token
    // (sampled, never evaluated).
    expect(got.cachedTokens).toBe(history.length - 1);
    expect(got.tokens).toEqual((await plain.generate(next, greedy).result).tokens);
    // The old entry was taken over and replaced by the longer conversation, not duplicated.
    expect(cached.promptCache!.stats().entries).toBe(entriesBefore);
    expect(cached.model.sequenceCount).toBe(cached.promptCache!.stats().entries);
  });

  it("keeps what an aborted generation evaluated", async () => {
    const tokens = cached.tokenizer.encode(`${SYSTEM}Count to twenty slowly.`);
    const controller = new AbortController();
    const generation = cached.generate(tokens, {
      ...greedy,
      maxTokens: 50,
      signal: controller.signal,
    });
    let pieces = 0;
    for await (const _ of generation) {
      if (++pieces === 3) {
        controller.abort();
      }
    }
    expect((await generation.result).finishReason).toBe("abort");
    const again = await cached.generate(tokens, greedy).result;
    expect(again.cachedTokens).toBe(tokens.length - 1);
    expect(again.tokens).toEqual((await plain.generate(tokens, greedy).result).tokens);
  });

  it("stays within its byte budget, evicting the least recently used entries", async () => {
    // Room for one entry (a prompt and the 7 generated tokens evaluated) but not two.
    const entryTokens = plain.tokenizer.encode("Write about mountains.").length + 7;
    const budget = Math.floor(1.5 * entryTokens) * plain.model.capacity().kvBytesPerToken;
    const small = new TextGenerator(plain.model, plain.tokenizer, {
      promptCache: { maxBytes: budget },
    });
    const live = plain.model.sequenceCount;
    for (const topic of ["rivers", "mountains", "deserts"]) {
      await small.generate(`Write about ${topic}.`, greedy).result;
      const s = small.promptCache!.stats();
      expect(s.bytes).toBeLessThanOrEqual(budget);
      expect(plain.model.sequenceCount).toBe(live + s.entries);
    }
    expect(small.promptCache!.stats().evictions).toBeGreaterThan(0);
    // A generation larger than the whole budget is not kept.
    await small.generate(`${SYSTEM}${SYSTEM}`, greedy).result;
    expect(small.promptCache!.stats().bytes).toBeLessThanOrEqual(budget);
    small.promptCache!.clear();
    expect(plain.model.sequenceCount).toBe(live);
    // And within its count of entries.
    const few = new TextGenerator(plain.model, plain.tokenizer, {
      promptCache: { maxBytes: 64 << 20, maxEntries: 2 },
    });
    for (const topic of ["rivers", "mountains", "deserts"]) {
      await few.generate(`Write about ${topic}.`, greedy).result;
    }
    expect(few.promptCache!.stats()).toMatchObject({ entries: 2, evictions: 1 });
    few.promptCache!.clear();
  });

  it("is skipped per request with cachePrompt: false, and for short shared prefixes", async () => {
    const tokens = cached.tokenizer.encode(`${SYSTEM}What is the capital of France?`);
    const live = cached.model.sequenceCount;
    const off = await cached.generate(tokens, { ...greedy, cachePrompt: false }).result;
    expect(off.cachedTokens).toBe(0);
    expect(cached.model.sequenceCount).toBe(live);
    const picky = new TextGenerator(plain.model, plain.tokenizer, {
      promptCache: { maxBytes: 64 << 20, minReuse: 1000 },
    });
    const first = await picky.generate(tokens, greedy).result;
    // Shares a long prefix but less than minReuse, and the entry is not all a prefix: not reused.
    const other = await picky.generate(`${SYSTEM}Who wrote Hamlet?`, greedy).result;
    expect(other.cachedTokens).toBe(0);
    // The same conversation one turn later is handed over whatever minReuse says.
    const next = [
      ...tokens,
      ...first.tokens,
      ...picky.tokenizer.encode(" Why?", { addBos: false }),
    ];
    const later = await picky.generate(next, greedy).result;
    expect(later.cachedTokens).toBe(tokens.length + first.tokens.length - 1);
    picky.promptCache!.clear();
  });

  it("refuses nonsense options with a typed error", () => {
    expect(() => new PromptCache(plain.model, { maxBytes: -1 })).toThrow(/maxBytes = -1/);
    expect(() => new PromptCache(plain.model, { maxBytes: 1, maxEntries: 1.5 })).toThrow(
      /maxEntries = 1.5/,
    );
    expect(() => new PromptCache(plain.model, { maxBytes: 1, minReuse: 0 })).toThrow(
      /minReuse = 0/,
    );
  });
});
