import { type BackendName, registerBackend } from "@bitnet-ts/engine-core";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanup, fixture } from "../test/models";
import { lookupDraft, ModelDrafter, PromptLookupDrafter } from "./draft";
import { TextGenerator } from "./generator";

registerBackend("cpu", () => import("@bitnet-ts/kernels-cpu"));

describe("lookupDraft", () => {
  it("continues the latest earlier occurrence of the longest matching n-gram", () => {
    //            0  1  2  3  4  5  6  7  8  9 10 11
    const ctx = [1, 2, 3, 4, 9, 2, 3, 5, 7, 1, 2, 3];
    // "2 3" occurs at 1 and 5 (latest: 5 → 5 7 1 …); "1 2 3" only at 0 (→ 4 9 2 …): longer wins.
    expect(lookupDraft(ctx, 3, 2, 4)).toEqual([4, 9, 2]);
    expect(lookupDraft(ctx, 3, 2, 2)).toEqual([5, 7, 1]);
    expect(lookupDraft([1, 2, 3, 4], 5, 2, 4)).toEqual([]); // no earlier occurrence
    expect(lookupDraft([7, 7, 7], 4, 1, 1)).toEqual([7]); // stops at the end of the context
    expect(lookupDraft([5], 4, 1, 4)).toEqual([]);
  });

  it("always proposes what followed an earlier occurrence of the context's last n tokens", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 0, maxLength: 60 }),
        fc.integer({ min: 1, max: 8 }),
        (ctx, max) => {
          const draft = lookupDraft(ctx, max, 2, 4);
          expect(draft.length).toBeLessThanOrEqual(max);
          if (draft.length === 0) {
            return;
          }
          // Some g in 2..4 and start j with ctx[j, j+g) = the last g tokens, followed by the draft.
          const found = [4, 3, 2].some((g) =>
            ctx.some(
              (_, j) =>
                j + g < ctx.length &&
                ctx.slice(j, j + g).join() === ctx.slice(ctx.length - g).join() &&
                ctx.slice(j + g, j + g + draft.length).join() === draft.join(),
            ),
          );
          expect(found).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("refuses nonsense options", () => {
    expect(() => new PromptLookupDrafter({ maxDraft: 0 })).toThrow(/maxDraft = 0/);
    expect(() => new PromptLookupDrafter({ ngramMin: 3, ngramMax: 2 })).toThrow(/ngramMin/);
  });
});

// A grounded task: the reply is expected to copy spans of the prompt.
const PASSAGE =
  "The river rises in the northern hills, flows south through the old market town, turns east at the mill, and reaches the sea beyond the salt marshes.";
const GROUNDED = `Text: ${PASSAGE}\nRepeat the text exactly.\nText: ${PASSAGE.slice(0, 40)}`;

describe.each(["reference", "cpu"] as const)(
  "speculative decoding on the %s backend",
  (backend) => {
    let target: TextGenerator;
    let draftModel: TextGenerator;

    beforeAll(async () => {
      target = await TextGenerator.load(await fixture("tiny-i2s"), {
        backend: backend as BackendName,
        contextLength: 256,
      });
      // Another model with the same vocabulary (other weights): it guesses, sometimes wrongly.
      draftModel = await TextGenerator.load(await fixture("tiny-tq2"), {
        backend: backend as BackendName,
        contextLength: 256,
      });
    }, 120_000);
    afterAll(async () => {
      await target?.dispose();
      await draftModel?.dispose();
    });

    const greedy = { maxTokens: 24, temperature: 0, ignoreEos: true } as const;

    it.each([
      ["prompt lookup", () => new PromptLookupDrafter({ maxDraft: 6 })],
      [
        "another draft model",
        () => new ModelDrafter(draftModel.model, { maxDraft: 4, label: "tq2" }),
      ],
      ["the model itself as draft", () => new ModelDrafter(target.model, { maxDraft: 5 })],
    ])("greedy output is identical to plain decoding: %s", async (_what, make) => {
      const drafter = make();
      const live = target.model.sequenceCount;
      const plain = await target.generate(GROUNDED, greedy).result;
      const fast = await target.generate(GROUNDED, { ...greedy, draft: drafter }).result;
      expect(fast.tokens).toEqual(plain.tokens);
      expect(fast.text).toBe(plain.text);
      expect(fast.finishReason).toBe(plain.finishReason);
      const stats = fast.speculative!;
      expect(stats.drafter).toBe(drafter.name);
      expect(stats.accepted).toBeLessThanOrEqual(stats.drafted);
      if (drafter instanceof ModelDrafter && drafter.model === target.model) {
        // Its own greedy guesses are always right.
        expect(stats.drafted).toBeGreaterThan(0);
        expect(stats.accepted).toBe(stats.drafted);
        // …so the 23 tokens after the first took far fewer steps than 23.
        expect(stats.steps).toBeLessThan(8);
      }
      // Every sequence was freed (the draft model's too).
      expect(target.model.sequenceCount).toBe(live);
      expect(draftModel.model.sequenceCount).toBe(0);
    });

    it("stops, counts and caches exactly as plain decoding does", async () => {
      const drafter = new ModelDrafter(target.model, { maxDraft: 8 });
      for (const options of [
        { maxTokens: 7, temperature: 0, ignoreEos: true },
        { maxTokens: 30, temperature: 0, stop: ["e"] },
      ]) {
        const plain = await target.generate(GROUNDED, options).result;
        const fast = await target.generate(GROUNDED, { ...options, draft: drafter }).result;
        expect(fast.tokens).toEqual(plain.tokens);
        expect(fast.text).toBe(plain.text);
        expect(fast.finishReason).toBe(plain.finishReason);
      }
      // The prompt cache gets KV that matches its tokens: a later plain request agrees.
      const cached = new TextGenerator(target.model, target.tokenizer, {
        promptCache: { maxBytes: 16 << 20, minReuse: 1 },
      });
      const first = await cached.generate(GROUNDED, { ...greedy, draft: drafter }).result;
      const continued = [...first.promptTokens, ...first.tokens];
      const again = await cached.generate(continued, greedy).result;
      expect(again.cachedTokens).toBeGreaterThan(first.promptTokens.length);
      expect(again.tokens).toEqual((await target.generate(continued, greedy).result).tokens);
      cached.promptCache!.clear();
    });

    it("refuses a draft model with another vocabulary", async () => {
      const fake = new ModelDrafter(target.model);
      Object.defineProperty(fake, "vocabSize", { value: 32000 });
      expect(() => target.generate("Hi", { draft: fake })).toThrow(/vocabulary has 32000 tokens/);
    });
  },
);

describe("speculative sampling keeps the model's distribution", () => {
  let target: TextGenerator;
  beforeAll(async () => {
    target = await TextGenerator.load(await fixture("tiny-i2s"), {
      backend: "cpu",
      contextLength: 128,
    });
  }, 120_000);
  afterAll(async () => {
    await target?.dispose();
    cleanup();
  });

  it("the drafted position's token has the same distribution with and without drafting", {
    timeout: 120_000,
  }, async () => {
    // The model drafts for itself: its greedy guess (the top candidate) is accepted with the
    // candidate's probability, and otherwise a token is drawn from the rest. Over many seeds the
    // second generated token (the first checked against a draft) must follow the same
    // distribution as without drafting: a two-sample chi-square test over the top-5 candidates.
    const drafter = new ModelDrafter(target.model, { maxDraft: 2 });
    // top-p and min-p off (they act before the temperature and would keep only the top token of
    // this peaked random model); a high temperature spreads the five candidates.
    const settings = { maxTokens: 3, temperature: 5, topK: 5, topP: 1, minP: 0, ignoreEos: true };
    const prompt = target.tokenizer.encode("Once upon a time");
    const runs = 500;
    const countOf = async (draft: boolean) => {
      const counts = new Map<string, number>();
      for (let seed = 1; seed <= runs; seed++) {
        const r = await target.generate(prompt, {
          ...settings,
          seed,
          ...(draft ? { draft: drafter } : {}),
        }).result;
        // The second token is the one checked against a draft (the room for a draft leaves one
        // token to generate after it, hence 3).
        expect(r.speculative?.drafted ?? 1).toBe(1);
        const key = r.tokens.slice(0, 2).join(",");
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      return counts;
    };
    const a = await countOf(false);
    const b = await countOf(true);
    // Pairs (first, second token) seen at least 10 times in all, the rest pooled.
    const keys = [...new Set([...a.keys(), ...b.keys()])];
    const big = keys.filter((k) => (a.get(k) ?? 0) + (b.get(k) ?? 0) >= 10);
    const cells = [
      ...big.map((k) => [a.get(k) ?? 0, b.get(k) ?? 0] as const),
      [
        runs - big.reduce((s, k) => s + (a.get(k) ?? 0), 0),
        runs - big.reduce((s, k) => s + (b.get(k) ?? 0), 0),
      ] as const,
    ].filter(([x, y]) => x + y > 0);
    let chi = 0;
    for (const [x, y] of cells) {
      const e = (x + y) / 2; // equal sample sizes
      chi += (x - e) ** 2 / e + (y - e) ** 2 / e;
    }
    const df = cells.length - 1;
    expect(df).toBeGreaterThanOrEqual(3); // the test has something to compare
    // The 0.1% critical value of chi-square with df degrees of freedom (Wilson-Hilferty).
    const z = 3.09;
    const critical = df * (1 - 2 / (9 * df) + z * Math.sqrt(2 / (9 * df))) ** 3;
    expect(chi).toBeLessThan(critical);
  });
});
