#!/usr/bin/env node
/**
 * Tokenizer throughput: encode MB/s of @bitnet-ts/tokenizers next to llama3-tokenizer-js and
 * llama.cpp (node-llama-cpp) on the same text and the same GGUF vocabulary, in the same process.
 *
 *   pnpm bench:tokenizer [--model FILE.gguf] [--mb 1] [--runs 7] [--json]
 *
 * The text is the parity corpus (fixtures/tokenizer-corpus.jsonl: prose, code, numbers, CJK,
 * emoji, …) repeated to the requested size. Each tool encodes it once to warm up, then `runs`
 * times; the median is reported. "cold" clears our pre-token cache before every run.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { readGgufFile } from "@bitnet-ts/gguf";
import { Tokenizer } from "@bitnet-ts/tokenizers";
import llama3Tokenizer from "llama3-tokenizer-js";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

interface Result {
  readonly tool: string;
  readonly mbPerSecond: number;
  readonly tokens: number;
}

function findUp(relative: string): string {
  let dir = process.cwd();
  for (;;) {
    const candidate = path.join(dir, relative);
    if (fs.existsSync(candidate)) {
      return candidate;
    }
    const parent = path.dirname(dir);
    if (parent === dir) {
      throw new Error(`could not find ${relative} above ${process.cwd()}`);
    }
    dir = parent;
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: "string" },
      mb: { type: "string", default: "1" },
      runs: { type: "string", default: "7" },
      json: { type: "boolean", default: false },
    },
  });
  let modelPath = values.model;
  if (modelPath === undefined) {
    modelPath = path.join(os.tmpdir(), "bitnet-bench-tiny-tq2.gguf");
    if (!fs.existsSync(modelPath)) {
      await writeFixture(PRESETS["tiny-tq2"]!, modelPath);
    }
  }
  const lines = fs
    .readFileSync(findUp("fixtures/tokenizer-corpus.jsonl"), "utf8")
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as string);
  const targetBytes = Number(values.mb) * 1e6;
  let text = "";
  while (Buffer.byteLength(text) < targetBytes) {
    text += `${lines.join("\n")}\n`;
  }
  const megabytes = Buffer.byteLength(text) / 1e6;
  const runs = Number(values.runs);

  const file = await readGgufFile(modelPath);
  const ours = Tokenizer.fromGguf(file.metadata);
  const llama = await getLlama({ build: "never", gpu: false, logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath });

  const measure = (tool: string, encode: () => number): Result => {
    const tokens = encode();
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const start = performance.now();
      encode();
      times.push(performance.now() - start);
    }
    times.sort((a, b) => a - b);
    const median = times[Math.floor(times.length / 2)]!;
    return { tool, mbPerSecond: megabytes / (median / 1000), tokens };
  };

  const results = [
    measure("@bitnet-ts/tokenizers (warm cache)", () => ours.encode(text).length),
    measure("@bitnet-ts/tokenizers (cold cache)", () => {
      ours.clearCache();
      return ours.encode(text).length;
    }),
    measure(
      "llama3-tokenizer-js 1.2.0",
      () => llama3Tokenizer.encode(text, { bos: true, eos: false }).length,
    ),
    measure("llama.cpp (node-llama-cpp 3.22.1)", () => model.tokenize(text, false).length + 1),
  ];
  await model.dispose();
  await llama.dispose();

  if (values.json) {
    console.log(JSON.stringify({ model: modelPath, megabytes, runs, results }, null, 2));
    return;
  }
  console.log(
    `encode throughput, ${megabytes.toFixed(2)} MB of mixed text, median of ${runs} runs, ${os.cpus()[0]?.model ?? "cpu"}`,
  );
  console.log("");
  console.log(`| tool | MB/s | tokens |`);
  console.log(`|---|---:|---:|`);
  for (const r of results) {
    console.log(`| ${r.tool} | ${r.mbPerSecond.toFixed(2)} | ${r.tokens} |`);
  }
}

main().catch((error: unknown) => {
  console.error(`bench:tokenizer: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
