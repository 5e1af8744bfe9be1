import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ChatOptions, runChat } from "./commands/chat";

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(here, "../dist/bitnet.js");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bitnet-cli-gen-"));
const i2s = path.join(tmp, "tiny-i2s.gguf");
const tq2 = path.join(tmp, "tiny-tq2.gguf");

beforeAll(async () => {
  if (!fs.existsSync(BIN)) {
    throw new Error(`${BIN} is missing: run the build first (pnpm test builds it)`);
  }
  await writeFixture(PRESETS["tiny-i2s"]!, i2s);
  await writeFixture(PRESETS["tiny-tq2"]!, tq2);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function bitnet(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: "utf8",
    env: { ...process.env, BITNET_CACHE_DIR: path.join(tmp, "cache"), ...env },
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("bitnet run --draft", () => {
  it("gives the plain run's tokens with prompt lookup and with a draft model, and says what it drafted", () => {
    const base = [
      "run",
      "-m",
      i2s,
      "-p",
      "one two three four one two three four one two",
      "-n",
      "16",
      "--temp",
      "0",
      "--ignore-eos",
      "--json",
    ];
    const plain = bitnet(base);
    expect(plain.code, plain.stderr).toBe(0);
    const want = JSON.parse(plain.stdout).tokens;
    for (const draft of [
      ["--draft", "lookup", "--draft-max", "4"],
      ["--draft", tq2],
    ]) {
      const r = bitnet([...base, ...draft]);
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.tokens).toEqual(want);
      expect(out.speculative.drafter).toBe(draft[1] === "lookup" ? "lookup" : "model:tiny-tq2");
      expect(r.stderr).toContain("drafting with");
    }
  });

  it("refuses a draft model with another vocabulary, and --draft-max without --draft", () => {
    const spm = path.join(tmp, "tiny-spm.gguf");
    return writeFixture(PRESETS["tiny-spm"]!, spm).then(() => {
      const r = bitnet(["run", "-m", i2s, "-p", "Hi", "-n", "2", "--draft", spm]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain("its vocabulary differs from the model's");
      const lone = bitnet(["run", "-m", i2s, "-p", "Hi", "-n", "2", "--draft-max", "3"]);
      expect(lone.code).not.toBe(0);
      expect(lone.stderr).toContain("no --draft given");
    });
  });
});

describe("bitnet run", () => {
  it("streams the prompt and its continuation, with timings on stderr", () => {
    const r = bitnet([
      "run",
      "-m",
      i2s,
      "-p",
      "The capital of France is",
      "-n",
      "6",
      "--temp",
      "0",
      "--backend",
      "reference",
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout.startsWith("The capital of France is ")).toBe(true);
    expect(r.stdout.trim().split(" ").length).toBeGreaterThanOrEqual(5 + 5);
    expect(r.stderr).toMatch(/reference backend \| load .* \| generated 6 tokens/);
  });

  it("--backend cuda (here on the CUDA kernels' host twins) generates the CPU backend's greedy tokens", () => {
    const args = [
      "run",
      "-m",
      i2s,
      "-p",
      "The capital of France is",
      "-n",
      "6",
      "--temp",
      "0",
      "--json",
    ];
    const cpu = bitnet([...args, "--backend", "cpu"]);
    const cuda = bitnet([...args, "--backend", "cuda"], { BITNET_CUDA_EXECUTION: "host" });
    expect(cuda.stderr).not.toMatch(/error/i);
    expect(cuda.code).toBe(0);
    expect(JSON.parse(cuda.stdout).tokens).toEqual(JSON.parse(cpu.stdout).tokens);
    expect(JSON.parse(cuda.stdout).backend ?? "cuda").toMatch(/cuda/);
  });

  it("--backend cuda without a usable GPU fails with the driver's reason", () => {
    const r = bitnet(["run", "-m", i2s, "-p", "x", "-n", "1", "--backend", "cuda"], {
      BITNET_CUDA_EXECUTION: "",
    });
    if (r.code === 0) {
      return; // a machine with a CUDA GPU runs it
    }
    expect(r.stderr).toMatch(/cuda/i);
    expect(r.stderr).not.toMatch(/at .*\.js:\d+/); // a message, not a stack trace
  });

  it("prints one JSON object with --json, and the same seed gives the same tokens", () => {
    const args = [
      "run",
      "-m",
      tq2,
      "-p",
      "Once upon a time",
      "-n",
      "8",
      "-s",
      "42",
      "--temp",
      "0.9",
      "--json",
      "--backend",
      "reference",
    ];
    const a = bitnet(args);
    expect(a.code).toBe(0);
    const json = JSON.parse(a.stdout);
    expect(Object.keys(json)).toEqual(
      expect.arrayContaining(["prompt_tokens", "tokens", "text", "timings"]),
    );
    expect(json.prompt_tokens[0]).toBe(128000);
    expect(json.tokens).toHaveLength(8);
    expect(json.seed).toBe(42);
    expect(json.timings.predicted_tokens).toBe(8);
    expect(JSON.parse(bitnet(args).stdout).tokens).toEqual(json.tokens);
  });

  it("uses the embedded demo model without -m and says so on stderr", () => {
    const r = bitnet(["run", "-p", "Hello", "-n", "4", "--temp", "0", "--backend", "reference"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("synthetic demo model");
    expect(r.stdout.startsWith("Hello")).toBe(true);
    expect(fs.existsSync(path.join(tmp, "cache", "models", "demo-tiny-i2s-seed1.gguf"))).toBe(true);
  });

  it("rejects bad flags and values with one line and exit code 1", () => {
    for (const args of [
      ["run", "-m", i2s, "-p", "x", "--top-p", "2"],
      ["run", "-m", i2s, "-p", "x", "-n", "abc"],
      ["run", "-m", i2s, "-p", "x", "--backend", "gpu"],
      ["run", "-m", path.join(tmp, "missing.gguf"), "-p", "x"],
      ["run", "--bogus"],
    ]) {
      const r = bitnet(args);
      expect(r.code, args.join(" ")).toBe(1);
      expect(r.stderr).not.toContain("    at ");
    }
  });
});

describe("bitnet chat", () => {
  it("holds a conversation through a pseudo-terminal", () => {
    const r = spawnSync(
      "python3",
      [
        path.resolve(here, "../test/pty_driver.py"),
        JSON.stringify(["Hello there", "/reset", "Again", "/exit"]),
        process.execPath,
        BIN,
        "chat",
        "-m",
        i2s,
        "--temp",
        "0",
        "-n",
        "5",
        "--backend",
        "reference",
        "-sys",
        "Be brief.",
      ],
      {
        encoding: "utf8",
        env: { ...process.env, BITNET_CACHE_DIR: path.join(tmp, "cache") },
        timeout: 180_000,
      },
    );
    expect(r.status).toBe(0);
    const { output, status } = JSON.parse(r.stdout);
    expect(status).toBe(0);
    expect(output).toContain("Hello there");
    expect(output).toContain("(conversation reset)");
    // Two replies of words after the echoed user lines.
    expect(output.split("> ").length).toBeGreaterThanOrEqual(5);
  });
});

describe("bitnet chat at the end of the context", () => {
  // runChat itself, fed by a stream: stdin is not a terminal here, and the point is what it
  // prints to stdout and stderr when the 64-token context fills.
  async function chat(extra: Partial<ChatOptions>, lines: readonly string[]) {
    let stdout = "";
    let stderr = "";
    const io = {
      stdout: (t: string): void => {
        stdout += t;
      },
      stderr: (t: string): void => {
        stderr += t;
      },
    };
    const input = Readable.from(lines.map((l) => `${l}\n`));
    await runChat(
      {
        model: i2s,
        backend: "reference",
        ctxSize: 64,
        temp: 0,
        nPredict: 4,
        system: "Be brief.",
        ...extra,
      },
      io,
      input,
    );
    return { stdout, stderr };
  }
  const turns = Array.from(
    { length: 6 },
    (_, i) => `Tell me about the house by the river, part ${i}.`,
  );

  it("refuses a message that leaves no room, with the numbers, and carries on", {
    timeout: 120_000,
  }, async () => {
    const { stdout, stderr } = await chat({}, [...turns, "/reset", "Hi"]);
    expect(stderr).toMatch(
      /bitnet: could not send the message - the conversation would have \d+ tokens and the reply needs room for 4 more, but the context holds 64/,
    );
    expect(stderr).toContain("--context-shift");
    expect(stdout).toContain("(conversation reset)");
    expect(stderr).not.toContain("dropped");
  });

  it("with --context-shift drops the oldest turns and says so on stderr", {
    timeout: 120_000,
  }, async () => {
    const { stderr } = await chat({ contextShift: true }, turns);
    expect(stderr).toMatch(
      /bitnet: the context was full: dropped the \d+ oldest messages \(\d+ → \d+ tokens; 4 kept free for the reply\)/,
    );
    expect(stderr).not.toContain("could not send");
  });
});

describe("bitnet perplexity and eval", () => {
  it("prints llama-perplexity's running and final estimate", () => {
    const text = path.join(tmp, "text.txt");
    fs.writeFileSync(text, "the house by the river and the tree in the garden ".repeat(10));
    const r = bitnet(["perplexity", "-m", tq2, "-f", text, "-c", "32", "--backend", "reference"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\[1\][\d.]+,/);
    expect(r.stdout).toMatch(/Final estimate: PPL = [\d.]+ \+\/- [\d.]+/);
    const short = bitnet([
      "perplexity",
      "-m",
      tq2,
      "-f",
      text,
      "-c",
      "512",
      "--backend",
      "reference",
    ]);
    expect(short.code).toBe(1);
    expect(short.stderr).toMatch(/at least 2 × n_ctx = 1024 are needed/);
  });

  it("writes every position's logits as f32 and prints the greedy next tokens", () => {
    const out = path.join(tmp, "logits.f32");
    const tokens = [128000, 791, 6864, 315];
    const batch = bitnet([
      "eval",
      "-m",
      tq2,
      "--tokens",
      tokens.join(","),
      "--logits",
      out,
      "--backend",
      "reference",
    ]);
    expect(batch.code).toBe(0);
    const greedy = JSON.parse(batch.stdout);
    expect(greedy).toHaveLength(4);
    const bytes = fs.readFileSync(out);
    expect(bytes.length).toBe(4 * 128256 * 4);
    const logits = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    let best = 0;
    for (let t = 1; t < 128256; t++) {
      if (logits[3 * 128256 + t]! > logits[3 * 128256 + best]!) {
        best = t;
      }
    }
    expect(best).toBe(greedy[3]);
    const seq = bitnet([
      "eval",
      "-m",
      tq2,
      "--tokens",
      tokens.join(","),
      "--seq",
      "--logits",
      `${out}.seq`,
      "--backend",
      "reference",
    ]);
    expect(Buffer.compare(fs.readFileSync(`${out}.seq`), bytes)).toBe(0);
    expect(seq.stdout).toBe(batch.stdout);
    expect(bitnet(["eval", "-m", tq2, "--tokens", "1,999999999"]).code).toBe(1);
  });
});

describe("bitnet crossval", () => {
  it("compares with llama.cpp and prints a table (JSON with --json)", () => {
    const prompts = path.join(tmp, "prompts.txt");
    fs.writeFileSync(prompts, "The capital of France is\n");
    const r = bitnet(["crossval", "-m", tq2, "-f", prompts, "-n", "4", "--json"]);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.engines.map((e: { engine: string }) => e.engine)).toEqual([
      "bitnet-ts reference (ggml numerics)",
      "bitnet-ts reference f64 (yardstick)",
    ]);
    expect(report.engines[0].summary.top1Agreement).toBe(1);
    expect(bitnet(["crossval"]).code).toBe(1);
  }, 120_000);
});
