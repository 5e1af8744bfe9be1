/**
 * Parity: every line of fixtures/tokenizer-corpus.jsonl must tokenize exactly as
 * llama3-tokenizer-js (an independent JS implementation) and as llama.cpp itself (through the
 * node-llama-cpp npm package, prebuilt binaries) on the same GGUF file.
 */
import { readGgufFile } from "@bitnet-ts/gguf";
import llama3Tokenizer from "llama3-tokenizer-js";
import { getLlama, type Llama, LlamaLogLevel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanup, corpus, fixture, fixtureWithoutPre } from "../test/models";
import { Tokenizer } from "./tokenizer";

const lines = corpus();
let llama: Llama;

beforeAll(async () => {
  llama = await getLlama({ build: "never", gpu: false, logLevel: LlamaLogLevel.error });
}, 60_000);
afterAll(async () => {
  await llama?.dispose();
  cleanup();
});

async function llamaCppParity(modelPath: string, tokenizer: Tokenizer): Promise<void> {
  const model = await llama.loadModel({ modelPath });
  try {
    const mismatches: string[] = [];
    for (const parseSpecial of [false, true]) {
      for (const line of lines) {
        const theirs = Array.from(model.tokenize(line, parseSpecial));
        const ours = tokenizer.encode(line, { addBos: false, parseSpecial });
        if (JSON.stringify(ours) !== JSON.stringify(theirs)) {
          mismatches.push(
            `${JSON.stringify(line)} (parseSpecial ${parseSpecial}): ours ${ours} llama.cpp ${theirs}`,
          );
        }
        if (!parseSpecial) {
          // Detokenizing llama.cpp's ids gives back the line (and so do ours).
          expect(tokenizer.decode(theirs)).toBe(line);
        }
      }
    }
    expect(mismatches).toEqual([]);
  } finally {
    await model.dispose();
  }
}

describe("tokenizer parity on the corpus", () => {
  it("has a corpus covering the hard cases", () => {
    expect(lines.length).toBeGreaterThanOrEqual(80);
    const all = lines.join("");
    for (const probe of [
      "👨‍👩‍👧",
      "日本",
      "مرحبا",
      "\r\n",
      "\t",
      "<|eot_id|>",
      "\u0000",
      "12345678901234567890",
      "'ll",
      "é",
    ]) {
      expect(all).toContain(probe);
    }
  });

  it("LLaMA-3 BPE equals llama3-tokenizer-js on every line", async () => {
    const file = await readGgufFile(await fixture("tiny-i2s"));
    const tokenizer = Tokenizer.fromGguf(file.metadata);
    const mismatches = lines.filter((line) => {
      // llama3-tokenizer-js always parses special tokens.
      const ours = tokenizer.encode(line, { addBos: false, parseSpecial: true });
      return (
        JSON.stringify(ours) !==
        JSON.stringify(llama3Tokenizer.encode(line, { bos: false, eos: false }))
      );
    });
    expect(mismatches).toEqual([]);
  });

  it("LLaMA-3 BPE (tokenizer.ggml.pre = llama-bpe) equals llama.cpp on every line", {
    timeout: 60_000,
  }, async () => {
    const path = await fixture("tiny-tq2");
    await llamaCppParity(path, Tokenizer.fromGguf((await readGgufFile(path)).metadata));
  });

  it("the llama.cpp-compatible mode equals llama.cpp's default pre-tokenizer on a file without tokenizer.ggml.pre", {
    timeout: 60_000,
  }, async () => {
    const path = await fixtureWithoutPre();
    const tokenizer = Tokenizer.fromGguf((await readGgufFile(path)).metadata, {
      preTokenizer: "llama.cpp",
    });
    expect(tokenizer.preTokenizerName).toBe("llama.cpp-default");
    await llamaCppParity(path, tokenizer);
  });

  it("SentencePiece (LLaMA-2 vocabulary) equals llama.cpp on every line", {
    timeout: 60_000,
  }, async () => {
    const path = await fixture("tiny-spm");
    await llamaCppParity(path, Tokenizer.fromGguf((await readGgufFile(path)).metadata));
  });
});
