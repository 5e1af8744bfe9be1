// What a new user coming from llama.cpp trips over: their flags, flags that do not apply, output
// files that cannot be written, and summaries that must add up. Unit tests where the logic is
// a function, the built CLI where the behaviour is the process's.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runChat } from "./commands/chat";
import { parseIds } from "./commands/tokenize";
import { CliInputError } from "./errors";
import { backendOf } from "./options";
import { checkOutputPath, writeFileAtomic } from "./output-file";
import { buildProgram, type CliIo, normalizeArgv } from "./program";

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(here, "../dist/bitnet.js");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bitnet-cli-user-"));
const model = path.join(tmp, "tiny-tq2.gguf");

beforeAll(async () => {
  await writeFixture(PRESETS["tiny-tq2"]!, model);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function bitnet(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: "utf8",
    timeout: 120_000,
    ...(input === undefined ? {} : { input }),
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const silent: CliIo = { stdout: () => {}, stderr: () => {} };

describe("llama.cpp's flags", () => {
  const program = buildProgram(silent);

  it("rewrites its multi-letter aliases where the command has the option", () => {
    expect(normalizeArgv(["chat", "-sys", "be brief"], program)).toEqual([
      "chat",
      "--system",
      "be brief",
    ]);
    expect(normalizeArgv(["serve", "-np", "2", "-to=30"], program)).toEqual([
      "serve",
      "--parallel",
      "2",
      "--timeout=30",
    ]);
    expect(normalizeArgv(["run", "-md", "draft.gguf"], program)).toEqual([
      "run",
      "--draft",
      "draft.gguf",
    ]);
  });

  it("refuses an alias the command does not have, naming the command", () => {
    expect(() => normalizeArgv(["run", "-p", "x", "-sys", "hi"], program)).toThrow(
      /-sys \(--system\) is not an option of `bitnet run`/,
    );
  });

  it.each([
    ["-ngl", /no layers to offload/],
    ["--n-gpu-layers", /choose it with --backend/],
    ["-fa", /attention is always fused/],
    ["-cnv", /use `bitnet chat`/],
    ["-hf", /never downloads models/],
    ["-ctk", /f16/],
  ])("refuses %s with what to do instead (not as -n gl, -f a, …)", (flag, advice) => {
    const run = () => normalizeArgv(["run", "-m", "m.gguf", flag, "1"], program);
    expect(run).toThrow(CliInputError);
    expect(run).toThrow(advice);
  });

  it("leaves prompts that look like flags alone", () => {
    expect(normalizeArgv(["run", "-p", "-fa", "-r", "-ngl"], program)).toEqual([
      "run",
      "-p",
      "-fa",
      "-r",
      "-ngl",
    ]);
    expect(normalizeArgv(["run", "--", "-ngl"], program)).toEqual(["run", "--", "-ngl"]);
  });

  it("the CLI exits 1 with the advice and the error code", () => {
    const r = bitnet(["run", "-m", model, "-p", "hi", "-ngl", "99"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("llama.cpp's -ngl is not a bitnet option");
    expect(r.stderr).toContain("[CLI_INVALID_INPUT]");
  });
});

describe("flags that only the CPU backend reads", () => {
  it("choose the CPU backend under auto, so a forced kernel path is never silently dropped", () => {
    expect(backendOf({ kernelPath: "avx2" })).toBe("cpu");
    expect(backendOf({ backend: "auto", head: "q8_0" })).toBe("cpu");
    expect(backendOf({ backend: "cpu", tq1: "direct" })).toBe("cpu");
    expect(backendOf({})).toBeUndefined();
    expect(backendOf({ backend: "reference" })).toBe("reference");
  });

  it("--tq1 on a model without TQ1_0 weights says that it changes nothing", () => {
    const r = bitnet(["run", "-m", model, "-p", "hi", "-n", "1", "--tq1", "direct"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("--tq1 direct changes nothing: the model has no TQ1_0 weights");
  });

  it("are refused with another backend, and two head spellings must agree", () => {
    expect(() => backendOf({ backend: "reference", head: "q8_0" })).toThrow(
      /could not use --head q8_0 with --backend reference - only the CPU backend reads it/,
    );
    expect(() => backendOf({ backend: "webgpu", kernelPath: "avx2", tq1: "direct" })).toThrow(
      /--kernel-path avx2 and --tq1 direct .* only the CPU backend reads them/,
    );
    expect(() => backendOf({ head: "q6_k", headQ8_0: true })).toThrow(/disagree/);
    expect(backendOf({ head: "q8_0", headQ8_0: true })).toBe("cpu");
  });
});

describe("token id lists (detokenize --ids, eval --tokens)", () => {
  it("reads commas and spaces", () => {
    expect(parseIds("1,2, 3 4")).toEqual([1, 2, 3, 4]);
  });

  it("names the command and flag, and refuses empty elements", () => {
    expect(() => parseIds("abc", "evaluate", "--tokens")).toThrow(
      'could not evaluate - "abc" is not a token id (--tokens takes non-negative integers).',
    );
    expect(() => parseIds(" ", "evaluate", "--tokens")).toThrow(
      /could not evaluate - --tokens is empty/,
    );
    expect(() => parseIds("1,,2")).toThrow(/--ids has an empty element at position 2/);
    expect(() => parseIds("1,2,")).toThrow(/empty element at position 3/);
  });
});

describe("output files", () => {
  it("checkOutputPath refuses a missing folder, a folder as the file, and an unwritable folder", () => {
    expect(() => checkOutputPath(path.join(tmp, "no", "r.json"), "--receipt")).toThrow(
      /could not write --receipt .* - the folder .* does not exist/,
    );
    expect(() => checkOutputPath(tmp, "--logits")).toThrow(/it is a folder; name a file/);
    checkOutputPath(path.join(tmp, "fine.json"), "--receipt");
    if (process.getuid?.() !== 0) {
      // root may write anywhere: the permission case only shows for other users.
      const locked = fs.mkdtempSync(path.join(tmp, "locked-"));
      fs.chmodSync(locked, 0o500);
      expect(() => checkOutputPath(path.join(locked, "x"), "--receipt")).toThrow(/not writable/);
    }
  });

  it("writeFileAtomic replaces the file whole and reports a failure in words, leaving no temp", () => {
    const file = path.join(tmp, "atomic.txt");
    writeFileAtomic(file, "one", "--out");
    writeFileAtomic(file, "two", "--out", 0o600);
    expect(fs.readFileSync(file, "utf8")).toBe("two");
    expect(() => writeFileAtomic(path.join(tmp, "gone", "x"), "x", "--out")).toThrow(
      /could not write --out .* - its folder does not exist/,
    );
    expect(fs.readdirSync(tmp).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  it("bitnet run --receipt into a missing folder fails before loading the model", () => {
    const r = bitnet([
      "run",
      "-m",
      model,
      "-p",
      "hi",
      "-n",
      "2",
      "--receipt",
      "/nonexistent/r.json",
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("could not write --receipt /nonexistent/r.json");
    expect(r.stderr).not.toContain("generated");
  });
});

describe("bitnet run", () => {
  it("reads the prompt from standard input with -f -, as from a file", () => {
    const args = ["run", "-m", model, "-n", "4", "--temp", "0", "--json"];
    const piped = bitnet([...args, "-f", "-"], "The cat sat");
    const given = bitnet([...args, "-p", "The cat sat"]);
    expect(piped.code, piped.stderr).toBe(0);
    expect(JSON.parse(piped.stdout).prompt_tokens).toEqual(JSON.parse(given.stdout).prompt_tokens);
  });

  it("says that standard input is not read when no prompt is given", () => {
    const r = bitnet(["run", "-m", model, "-n", "2", "-s", "1"], "ignored");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("standard input is not read unless asked (-f -)");
  });

  it("times the tokens after the first and says so, in the summary and in --json", () => {
    const r = bitnet(["run", "-m", model, "-p", "hi", "-n", "6", "--temp", "0", "--ignore-eos"]);
    expect(r.code, r.stderr).toBe(0);
    const m = /generated 6 tokens, 5 after the first in ([\d.]+) ms \(([\d.]+) t\/s\)/.exec(
      r.stderr,
    );
    expect(m, r.stderr).not.toBeNull();
    expect(Number(m![2])).toBeCloseTo((5 * 1000) / Number(m![1]), -1);
    const json = JSON.parse(
      bitnet(["run", "-m", model, "-p", "hi", "-n", "6", "--temp", "0", "--ignore-eos", "--json"])
        .stdout,
    ).timings;
    expect(json.predicted_tokens).toBe(6);
    expect(json.predicted_timed_tokens).toBe(5);
    expect(json.predicted_per_second).toBeCloseTo((5 * 1000) / json.predicted_ms, 0);
  });

  it("warns when -c is past the training context, and refuses an empty reverse prompt", () => {
    const long = bitnet(["run", "-m", model, "-p", "hi", "-n", "1", "-c", "8192"]);
    expect(long.code, long.stderr).toBe(0);
    expect(long.stderr).toMatch(
      /warning: -c 8192 is longer than the \d+ tokens the model was trained on/,
    );
    const empty = bitnet(["run", "-m", model, "-p", "hi", "-r", ""]);
    expect(empty.code).toBe(1);
    expect(empty.stderr).toContain("the text to stop at must not be empty");
    expect(empty.stderr).toContain("(run bitnet run --help for usage)");
  });

  it("perplexity refuses a context under 4 before reading anything", () => {
    const r = bitnet(["perplexity", "-m", model, "-f", BIN, "-c", "1"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("-c 1 must be at least 4");
    expect(r.stderr).not.toContain("chunks of");
  });
});

describe("bitnet quantize", () => {
  it("calls a lossy embedding conversion lossy, with its error", () => {
    const out = path.join(tmp, "q8-embed.gguf");
    const r = bitnet(["quantize", model, out, "--embed", "q8_0"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /token_embd\.weight F16 → Q8_0 lossy: max \|Δ\| [\d.e-]+, relative RMS error [\d.]+%/,
    );
    expect(r.stderr).not.toContain("lossless");
  });
});

describe("bitnet chat", () => {
  it("answers an unknown /command with the list, sends //text as a message, and names its template", async () => {
    let err = "";
    let out = "";
    const io: CliIo = {
      stdout: (s) => {
        out += s;
      },
      stderr: (s) => {
        err += s;
      },
    };
    await runChat(
      { model, nPredict: 2, temp: 0, seed: 1 },
      io,
      Readable.from(["/bogus\n", "//slash text\n", "/exit\n"]),
    );
    expect(err).toContain("unknown command /bogus (commands: /reset, /exit, /quit");
    expect(err).toMatch(/chat template|2B-4T format/);
    // The "//" line went to the model: a reply was printed after its prompt.
    expect(out.split("> ").length).toBeGreaterThanOrEqual(3);
  });
});
