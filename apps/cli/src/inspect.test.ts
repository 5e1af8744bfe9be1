import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "./program";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bitnet-cli-"));
const model = path.join(tmp, "tiny-i2s.gguf");
const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../dist/bitnet.js");

beforeAll(async () => {
  await writeFixture(PRESETS["tiny-i2s"]!, model);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

describe("bitnet inspect", () => {
  it("prints a summary, the metadata and the tensor table", async () => {
    const { code, stdout, stderr } = await run("inspect", model);
    expect(code).toBe(0);
    expect(stderr).toBe("");
    expect(stdout).toContain("GGUF v3");
    expect(stdout).toContain("24 metadata keys, 24 tensors (1 F16, 9 F32, 14 I2_S)");
    expect(stdout).toMatch(/general\.architecture\s+STRING\s+"bitnet-b1\.58"/);
    expect(stdout).toMatch(/tokenizer\.ggml\.tokens\s+STRING\[128256\]\s+\["!", "\\"", "#"/);
    expect(stdout).toMatch(/layer_norm_rms_epsilon\s+FLOAT32\s+0\.00001\n/);
    expect(stdout).toMatch(/blk\.1\.ffn_down\.weight\s+I2_S\s+\[768, 256\]\s+49184/);
  });

  it("prints one JSON object with --json", async () => {
    const { code, stdout } = await run("inspect", "--json", model);
    expect(code).toBe(0);
    const json = JSON.parse(stdout);
    expect(Object.keys(json)).toEqual(["version", "metadata", "tensors"]);
    expect(json.version).toBe(3);
    expect(json.metadata["general.architecture"]).toBe("bitnet-b1.58");
    expect(json.metadata["bitnet-b1.58.rope.freq_base"]).toBe(500000);
    expect(json.metadata["bitnet-b1.58.attention.layer_norm_rms_epsilon"]).toBe(0.00001);
    expect(json.metadata["tokenizer.ggml.tokens"]).toEqual({ array: "STRING", length: 128256 });
    expect(json.metadata["tokenizer.ggml.merges"]).toEqual({ array: "STRING", length: 280147 });
    expect(json.tensors).toHaveLength(24);
    expect(json.tensors[0]).toEqual({
      name: "token_embd.weight",
      type: "F16",
      shape: [256, 128256],
      offset: expect.any(Number),
      size: 65667072,
    });
    expect(json.tensors[0].offset % 32).toBe(0);
    expect(
      json.tensors.find((t: { name: string }) => t.name === "blk.0.attn_q.weight"),
    ).toMatchObject({
      type: "I2_S",
      shape: [256, 256],
      size: 16416,
    });
  });

  it("prints short arrays in full and 64-bit integers as strings when unsafe", async () => {
    const { GgufWriter, gguf, GgufValueType } = await import("@bitnet-ts/gguf");
    const w = new GgufWriter();
    w.set("short", gguf.int32Array([1, 2, 3]))
      .set("edge", gguf.int32Array(Array.from({ length: 64 }, (_, i) => i)))
      .set("long", gguf.int32Array(Array.from({ length: 65 }, (_, i) => i)))
      .set("big", gguf.uint64(2n ** 60n))
      .set("small", gguf.uint64(42))
      .set("u64s", gguf.array(GgufValueType.UINT64, BigUint64Array.of(1n, 2n ** 63n)));
    const file = path.join(tmp, "types.gguf");
    await w.writeFile(file);
    const json = JSON.parse((await run("inspect", "--json", file)).stdout);
    expect(json.metadata).toEqual({
      short: [1, 2, 3],
      edge: Array.from({ length: 64 }, (_, i) => i),
      long: { array: "INT32", length: 65 },
      big: "1152921504606846976",
      small: 42,
      u64s: [1, "9223372036854775808"],
    });
    expect(json.tensors).toEqual([]);
  });

  it("reports bad input in one line on stderr with exit code 1", async () => {
    const missing = await run("inspect", path.join(tmp, "missing.gguf"));
    expect(missing.code).toBe(1);
    expect(missing.stdout).toBe("");
    expect(missing.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(missing.stderr).toContain("no such file");

    const bad = path.join(tmp, "bad.gguf");
    fs.writeFileSync(
      bad,
      Buffer.concat([Buffer.from("GGUF"), Buffer.from([3, 0, 0, 0]), Buffer.alloc(4)]),
    );
    const truncated = await run("inspect", bad);
    expect(truncated.code).toBe(1);
    expect(truncated.stderr).toMatch(
      /^bitnet: could not read the tensor count - .*\[GGUF_TRUNCATED\]\n$/,
    );

    const flag = await run("inspect", "--bogus", model);
    expect(flag.code).toBe(1);
    expect(flag.stderr).toContain("unknown option '--bogus'");
  });

  it("runs as a binary: exit codes, no stack traces unless --verbose", () => {
    if (!fs.existsSync(BIN)) {
      throw new Error(`${BIN} is missing: run the build first (pnpm test builds it)`);
    }
    const ok = spawnSync(process.execPath, [BIN, "inspect", "--json", model], { encoding: "utf8" });
    expect(ok.status).toBe(0);
    expect(JSON.parse(ok.stdout).tensors).toHaveLength(24);
    const bad = spawnSync(process.execPath, [BIN, "inspect", path.join(tmp, "none.gguf")], {
      encoding: "utf8",
    });
    expect(bad.status).toBe(1);
    expect(bad.stderr).not.toContain("    at ");
    const verbose = spawnSync(
      process.execPath,
      [BIN, "inspect", "--verbose", path.join(tmp, "none.gguf")],
      { encoding: "utf8" },
    );
    expect(verbose.status).toBe(1);
    expect(verbose.stderr).toContain("    at ");
  });
});
