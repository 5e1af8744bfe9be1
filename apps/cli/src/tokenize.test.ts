import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "./program";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bitnet-cli-tok-"));
const model = path.join(tmp, "tiny-i2s.gguf");
const spm = path.join(tmp, "tiny-spm.gguf");

beforeAll(async () => {
  await writeFixture(PRESETS["tiny-i2s"]!, model);
  await writeFixture(PRESETS["tiny-spm"]!, spm);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

describe("bitnet tokenize / detokenize", () => {
  it("prints ids with their pieces, or only a JSON array with --json", async () => {
    const table = await run("tokenize", "-m", model, "Hello world 🎉");
    expect(table.code).toBe(0);
    expect(table.stdout).toBe(
      [
        '128000 -> "<|begin_of_text|>"',
        '  9906 -> "Hello"',
        '  1917 -> " world"',
        " 11410 -> bytes [20 f0 9f]",
        "   236 -> bytes [8e]",
        "   231 -> bytes [89]",
        "",
      ].join("\n"),
    );
    const json = await run("tokenize", "-m", model, "--json", "Hello world");
    expect(json.stdout).toBe("[128000,9906,1917]\n");
    expect((await run("tokenize", "-m", model, "--json", "--no-bos", "Hello world")).stdout).toBe(
      "[9906,1917]\n",
    );
    expect((await run("tokenize", "-m", spm, "--json", "Hello world")).stdout).toBe(
      "[1,15043,3186]\n",
    );
  });

  it("parses special tokens only with --special, and reads files", async () => {
    expect(
      (await run("tokenize", "-m", model, "--json", "--no-bos", "--special", "<|eot_id|>")).stdout,
    ).toBe("[128009]\n");
    expect(
      JSON.parse((await run("tokenize", "-m", model, "--json", "--no-bos", "<|eot_id|>")).stdout),
    ).not.toContain(128009);
    const file = path.join(tmp, "text.txt");
    fs.writeFileSync(file, "line one\nline two\n");
    const fromFile = await run("tokenize", "-m", model, "--json", "-f", file);
    expect(
      (await run("detokenize", "-m", model, "--ids", JSON.parse(fromFile.stdout).join(","))).stdout,
    ).toBe("line one\nline two\n\n");
  });

  it("detokenizes ids, rendering control tokens only with --special", async () => {
    expect((await run("detokenize", "-m", model, "--ids", "128000,9906,1917")).stdout).toBe(
      "Hello world\n",
    );
    expect(
      (await run("detokenize", "-m", model, "--ids", "128000, 9906, 1917", "--special")).stdout,
    ).toBe("<|begin_of_text|>Hello world\n");
  });

  it("selects llama.cpp's default pre-tokenizer with --pre llama.cpp", async () => {
    const text = "I DON'T know,, what's up?!";
    const a = JSON.parse((await run("tokenize", "-m", model, "--json", text)).stdout);
    const b = JSON.parse(
      (await run("tokenize", "-m", model, "--json", "--pre", "llama.cpp", text)).stdout,
    );
    expect(a).not.toEqual(b);
    expect((await run("detokenize", "-m", model, "--ids", b.join(","))).stdout).toBe(`${text}\n`);
  });

  it("rejects bad input with one clear line", async () => {
    const cases: [string[], RegExp][] = [
      [
        ["detokenize", "-m", model, "--ids", "1,999999"],
        /token id 999999 is out of range \(the vocabulary has 128256 tokens\)/,
      ],
      [["detokenize", "-m", model, "--ids", "1,-2"], /"-2" is not a token id/],
      [["detokenize", "-m", model, "--ids", ""], /--ids is empty/],
      [["tokenize", "-m", model], /give the text as an argument or with -f FILE/],
      [["tokenize", "-m", model, "--pre", "gpt5", "x"], /--pre gpt5/],
      [["tokenize", "x"], /required option '-m, --model/],
    ];
    for (const [argv, message] of cases) {
      const r = await run(...argv);
      expect(r.code, argv.join(" ")).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(message);
    }
    const surrogate = path.join(tmp, "surrogate.txt");
    fs.writeFileSync(surrogate, Buffer.from([0x61, 0x62, 0xed, 0xa0, 0x80, 0x63]));
    const bad = await run("tokenize", "-m", model, "-f", surrogate);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/not valid UTF-8 \(bad byte 0xed at offset 2/);
    const noTokenizer = path.join(tmp, "no-tokenizer.gguf");
    const { GgufWriter, gguf } = await import("@bitnet-ts/gguf");
    await new GgufWriter()
      .set("general.architecture", gguf.string("bitnet"))
      .writeFile(noTokenizer);
    const missing = await run("tokenize", "-m", noTokenizer, "x");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/has no tokenizer.*\[TOKENIZER_MISSING_KEY\]/);
  });
});
