import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { writeHfCheckpoint } from "@bitnet-ts/fixtures";
import { readGgufFileSync } from "@bitnet-ts/gguf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(here, "../dist/bitnet.js");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bitnet-cli-convert-"));
const hf = path.join(tmp, "hf");

beforeAll(async () => {
  await writeHfCheckpoint(hf, "bf16");
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function bitnet(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 240_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("bitnet convert / quantize", () => {
  it("converts a checkpoint folder, then the file generates text and requantizes", () => {
    const out = path.join(tmp, "m.gguf");
    const c = bitnet(["convert", hf, "-o", out, "--type", "i2_s", "--embed", "q8_0"]);
    expect(c.code, c.stderr).toBe(0);
    expect(c.stderr).toMatch(/bf16 checkpoint → .*m\.gguf \(bitnet-b1\.58, I2_S, 24 tensors/);
    const file = readGgufFileSync(out);
    expect(file.tensor("blk.1.ffn_down.weight").type.name).toBe("I2_S");
    expect(file.tensor("token_embd.weight").type.name).toBe("Q8_0");
    const run = bitnet(["run", "-m", out, "-p", "Once upon a time", "-n", "4", "--temp", "0"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.startsWith("Once upon a time")).toBe(true);
    // absmean scales are f32: TQ blocks hold f16, so this needs --allow-lossy.
    const lossy = bitnet(["quantize", out, path.join(tmp, "m-tq2.gguf"), "tq2_0"]);
    expect(lossy.code).toBe(1);
    expect(lossy.stderr).toContain("CONVERT_LOSSY");
    const ok = bitnet(["quantize", out, path.join(tmp, "m-tq2.gguf"), "tq2_0", "--allow-lossy"]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toMatch(/scales changed by up to [\d.]+%/);
  });

  it("rejects bad arguments with one clear line", () => {
    expect(bitnet(["convert", hf, "--type", "q4_0"]).stderr).toContain(
      'type "q4_0" is not one of i2_s, tq2_0, tq1_0',
    );
    expect(bitnet(["convert", path.join(tmp, "nope")]).stderr).toContain("CONVERT_MISSING_FILE");
    const same = bitnet(["quantize", path.join(tmp, "m.gguf"), path.join(tmp, "m.gguf"), "tq1_0"]);
    expect(same.stderr).toContain("would overwrite the input");
  });
});
