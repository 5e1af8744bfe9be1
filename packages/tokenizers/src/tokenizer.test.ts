import { type GgufMetadata, GgufWriter, gguf, parseGguf, readGgufFile } from "@bitnet-ts/gguf";
import * as fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanup, corpus, fixture } from "../test/models";
import { renderBitnet2b } from "./chat";
import { Tokenizer } from "./tokenizer";

let metadata: GgufMetadata;
let bpe: Tokenizer;
let spm: Tokenizer;

beforeAll(async () => {
  metadata = (await readGgufFile(await fixture("tiny-i2s"))).metadata;
  bpe = Tokenizer.fromGguf(metadata);
  spm = Tokenizer.fromGguf((await readGgufFile(await fixture("tiny-spm"))).metadata);
});
afterAll(cleanup);

describe("encoding", () => {
  it("adds BOS as the file says and parses special tokens only when asked", () => {
    expect(bpe.vocab.addBos).toBe(true);
    expect(bpe.encode("Hello world")).toEqual([128000, 9906, 1917]);
    expect(bpe.encode("Hello world", { addBos: false })).toEqual([9906, 1917]);
    expect(bpe.encode("<|eot_id|>", { addBos: false, parseSpecial: true })).toEqual([128009]);
    const plain = bpe.encode("<|eot_id|>", { addBos: false });
    expect(plain).not.toContain(128009);
    expect(bpe.decode(plain)).toBe("<|eot_id|>");
    expect(spm.encode("Hello world")).toEqual([1, 15043, 3186]);
    expect(spm.encode("</s>", { addBos: false, parseSpecial: true })).toEqual([2]);
  });

  it("knows the end-of-generation tokens", () => {
    expect(bpe.bos).toBe(128000);
    expect(bpe.eos).toBe(128001);
    expect(bpe.eot).toBe(128009);
    expect(bpe.endOfGenerationIds().sort()).toEqual([128001, 128008, 128009]);
    expect(bpe.isEndOfGeneration(128009)).toBe(true);
    expect(bpe.isEndOfGeneration(9906)).toBe(false);
    expect(spm.endOfGenerationIds()).toEqual([2]);
  });

  it("round-trips decode(encode(x)) on the corpus and on random strings", () => {
    for (const line of corpus()) {
      expect(bpe.decode(bpe.encode(line))).toBe(line);
      if (!line.includes("\u2581")) {
        expect(spm.decode(spm.encode(line))).toBe(line);
      }
    }
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 60 }), (s) => {
        expect(bpe.decode(bpe.encode(s))).toBe(s);
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 60 }), (s) => {
        // SentencePiece cannot tell "▁" from an escaped space; that character is excluded.
        fc.pre(!s.includes("\u2581"));
        expect(spm.decode(spm.encode(s))).toBe(s);
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.string({ unit: "binary-ascii", maxLength: 80 }), (s) => {
        expect(bpe.decode(bpe.encode(s, { parseSpecial: false }))).toBe(s);
      }),
      { numRuns: 300 },
    );
  });

  it("gives the same ids with a warm pre-token cache", () => {
    const text = corpus().join("\n");
    const first = bpe.encode(text);
    expect(bpe.encode(text)).toEqual(first);
    expect(Tokenizer.fromGguf(metadata).encode(text)).toEqual(first);
  });

  it("is not quadratic: 1 MB of one repeated character or without spaces encodes in near-linear time", () => {
    const time = (f: () => void, runs: number): number => {
      let best = Number.POSITIVE_INFINITY;
      for (let i = 0; i < runs; i++) {
        const t = performance.now();
        f();
        best = Math.min(best, performance.now() - t);
      }
      return best;
    };
    const letters = "abcdefghijklmnopqrstuvwxyz";
    const noSpaces = (n: number) =>
      Array.from({ length: n }, (_, i) => letters[(i * 7919) % 26]).join("");
    const cases: [string, Tokenizer, (n: number) => string][] = [
      ["repeated letter", bpe, (n) => "a".repeat(n)],
      ["spaces", bpe, (n) => " ".repeat(n)],
      ["no spaces", bpe, noSpaces],
      ["emoji", bpe, (n) => "🎉".repeat(n / 4)],
      ["SentencePiece, no spaces", spm, noSpaces],
      ["SentencePiece, repeated letter", spm, (n) => "a".repeat(n)],
    ];
    for (const [name, tokenizer, make] of cases) {
      const small = make(100_000);
      const large = make(1_000_000);
      const cold = (text: string) => () => {
        tokenizer.clearCache();
        tokenizer.encode(text);
      };
      const tSmall = time(cold(small), 3);
      const tLarge = time(cold(large), 1);
      // Linear would be 10×; quadratic 100×. Allow for n log n and noise.
      expect(tLarge / Math.max(tSmall, 1), name).toBeLessThan(30);
      expect(tokenizer.decode(tokenizer.encode(large))).toBe(large);
    }
  }, 120_000);
});

describe("decoding", () => {
  it("omits control tokens unless asked", () => {
    const ids = bpe.encode("<|start_header_id|>user<|end_header_id|>", { parseSpecial: true });
    expect(bpe.decode(ids)).toBe("user");
    expect(bpe.decode(ids, { special: true })).toBe(
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>",
    );
    expect(spm.decode([1, 15043, 2])).toBe("Hello");
  });

  it("streams multi-token characters whole, never half a UTF-8 sequence", () => {
    const text = "Family 👨‍👩‍👧 and 日本語 and é!";
    const ids = bpe.encode(text, { addBos: false });
    const stream = bpe.createDecoder();
    const chunks = ids.map((id) => stream.push(id));
    chunks.push(stream.flush());
    expect(chunks.join("")).toBe(text);
    for (const chunk of chunks) {
      expect(chunk).not.toContain("\ufffd");
      expect(chunk.isWellFormed()).toBe(true);
    }
    // The 4 bytes of 👨 come in several tokens: some pushes return "" while bytes wait.
    expect(chunks.some((c) => c === "")).toBe(true);
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 40 }), (s) => {
        for (const t of [bpe, spm]) {
          if (t === spm && s.includes("\u2581")) {
            continue;
          }
          const d = t.createDecoder();
          let out = "";
          for (const id of t.encode(s)) {
            const piece = d.push(id);
            expect(piece).not.toContain("\ufffd");
            out += piece;
          }
          expect(out + d.flush()).toBe(s);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("chat templates", () => {
  const messages = [
    { role: "system", content: "You are a helpful assistant." },
    { role: "user", content: " Hi " },
  ];

  it("renders the file's Jinja template", () => {
    expect(bpe.applyChatTemplate(messages)).toBe(
      "<|begin_of_text|>System: You are a helpful assistant.<|eot_id|>User: Hi<|eot_id|>Assistant: ",
    );
    expect(bpe.applyChatTemplate(messages, { addGenerationPrompt: false })).toBe(
      "<|begin_of_text|>System: You are a helpful assistant.<|eot_id|>User: Hi<|eot_id|>",
    );
    expect(bpe.applyChatTemplate(messages, { format: "bitnet.cpp" })).toBe(
      "<|begin_of_text|>System: You are a helpful assistant.User:  Hi <|eot_id|>Assistant: ",
    );
  });

  it("falls back to the 2B-4T format when the file has no template", () => {
    expect(spm.vocab.chatTemplate).toBeUndefined();
    expect(spm.applyChatTemplate(messages)).toBe(renderBitnet2b(messages, "<s>", true));
    expect(spm.applyChatTemplate([{ role: "user", content: "Hi" }])).toBe(
      "<s>User: Hi<|eot_id|>Assistant: ",
    );
  });

  it("tokenizes a chat with one BOS and parsed special tokens", () => {
    const ids = bpe.encodeChat(messages);
    expect(ids.filter((id) => id === 128000)).toHaveLength(1);
    expect(ids[0]).toBe(128000);
    expect(ids.filter((id) => id === 128009)).toHaveLength(2);
    expect(bpe.decode(ids, { special: true })).toBe(bpe.applyChatTemplate(messages));
  });

  it("reports a broken template as TOKENIZER_TEMPLATE", async () => {
    const w = new GgufWriter();
    w.setAll(metadata);
    w.set("tokenizer.chat_template", gguf.string("{% for m in messages %}{{ m.content "));
    const broken = Tokenizer.fromGguf(parseGguf(await w.toBytes()).metadata);
    expect(() => broken.applyChatTemplate(messages)).toThrowError(
      expect.objectContaining({ code: "TOKENIZER_TEMPLATE" }),
    );
  });
});

describe("odd byte-level vocabularies (read as bytes, as llama.cpp reads them)", () => {
  it("keeps the lowest id of a duplicate, skips unsplittable merges and spells out merge-only symbols", async () => {
    const w = new GgufWriter();
    w.set("tokenizer.ggml.model", gguf.string("gpt2"))
      .set("tokenizer.ggml.pre", gguf.string("gpt-2"))
      .set(
        "tokenizer.ggml.tokens",
        gguf.stringArray(["a", "b", "c", "ab", "a", "Ã", "©", "Ã©", "Ã©a", "d"]),
      )
      .set(
        "tokenizer.ggml.merges",
        // "ab c" makes "abc", which is not a token; "nospace" cannot be split; "a b" twice.
        gguf.stringArray(["a b", "ab c", "nospace", "a b", "Ã ©", "Ã© a", "d d"]),
      );
    const t = Tokenizer.fromGguf(parseGguf(await w.toBytes()).metadata);
    const encode = (text: string) => t.encode(text, { addBos: false });
    expect(encode("ab")).toEqual([3]);
    expect(encode("a")).toEqual([0]); // not the duplicate at 4
    expect(t.tokenId("a")).toBe(0);
    expect(encode("abc")).toEqual([0, 1, 2]); // "abc" is merge-only: emitted as its characters
    // "é" is bytes C3 A9, "Ã©" in the byte-level alphabet: two-byte characters in the merges.
    expect(encode("éa")).toEqual([8]);
    expect(t.decode([8])).toBe("éa");
    expect(encode("dd")).toEqual([9, 9]); // "dd" is merge-only too
    expect(t.tokenId("abc")).toBeUndefined();
    expect(t.decode([3, 2])).toBe("abc");
  });
});

describe("bad input", () => {
  it("rejects unpaired surrogates, out-of-range ids and files without a tokenizer", async () => {
    expect(() => bpe.encode("ok \ud800 not ok")).toThrowError(
      expect.objectContaining({
        code: "TOKENIZER_INVALID_TEXT",
        message: expect.stringContaining("U+D800"),
      }),
    );
    expect(() => bpe.decode([1, 999_999])).toThrowError(
      expect.objectContaining({ code: "TOKENIZER_INVALID_TOKEN" }),
    );
    expect(() => bpe.decode([-1])).toThrowError(
      expect.objectContaining({ code: "TOKENIZER_INVALID_TOKEN" }),
    );
    expect(() => bpe.decode([1.5])).toThrowError(
      expect.objectContaining({ code: "TOKENIZER_INVALID_TOKEN" }),
    );
    const empty = parseGguf(
      await new GgufWriter().set("general.architecture", gguf.string("x")).toBytes(),
    );
    expect(() => Tokenizer.fromGguf(empty.metadata)).toThrowError(
      expect.objectContaining({ code: "TOKENIZER_MISSING_KEY" }),
    );
    const bert = parseGguf(
      await new GgufWriter().set("tokenizer.ggml.model", gguf.string("bert")).toBytes(),
    );
    expect(() => Tokenizer.fromGguf(bert.metadata)).toThrowError(
      expect.objectContaining({ code: "TOKENIZER_UNSUPPORTED" }),
    );
    const w = new GgufWriter();
    w.set("tokenizer.ggml.model", gguf.string("llama"))
      .set("tokenizer.ggml.tokens", gguf.stringArray(["a", "b"]))
      .set("tokenizer.ggml.scores", gguf.float32Array([0]));
    const mismatched = parseGguf(await w.toBytes()).metadata;
    expect(() => Tokenizer.fromGguf(mismatched)).toThrowError(
      expect.objectContaining({ code: "TOKENIZER_INVALID_VOCAB" }),
    );
  });
});
