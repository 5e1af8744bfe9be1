import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import type { RunReceipt } from "@bitnet-ts/receipts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(here, "../dist/bitnet.js");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bitnet-cli-receipt-"));
const tq1 = path.join(tmp, "tiny-tq1.gguf");
const receiptFile = path.join(tmp, "run.json");

beforeAll(async () => {
  await writeFixture(PRESETS["tiny-tq1"]!, tq1);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function bitnet(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 240_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function tamper(edit: (r: RunReceipt) => void): string {
  const r = JSON.parse(fs.readFileSync(receiptFile, "utf8")) as RunReceipt;
  edit(r);
  const file = path.join(tmp, `tampered-${Math.random().toString(36).slice(2)}.json`);
  fs.writeFileSync(file, JSON.stringify(r));
  return file;
}

describe("run receipts end to end", () => {
  it("bitnet run --receipt writes what ran, and verify-receipt --replay reproduces it", () => {
    const run = bitnet([
      "run",
      "-m",
      tq1,
      "-p",
      "Once upon a time",
      "-n",
      "12",
      "--temp",
      "0.8",
      "-s",
      "7",
      "-t",
      "2",
      "--receipt",
      receiptFile,
    ]);
    expect(run.code, run.stderr).toBe(0);
    const receipt = JSON.parse(fs.readFileSync(receiptFile, "utf8")) as RunReceipt;
    expect(receipt.compute_path).toBe("real");
    expect(receipt.backend.name).toBe("cpu");
    expect(receipt.backend.kernels.some((k) => k.id.includes(".linear.tq1_0_as_tq2_0.q8_k"))).toBe(
      true,
    );
    expect(receipt.generated_tokens).toHaveLength(12);
    expect(receipt.sampling!.seed).toBe(7);
    const verify = bitnet(["verify-receipt", receiptFile, "-m", tq1, "--replay"]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(verify.stdout).toMatch(/replay\s+PASS\s+12 tokens reproduced exactly/);
    expect(verify.stdout).toMatch(/model_file\s+PASS/);
    expect(verify.stdout).toContain("VERIFIED");
  });

  it("a run with --head q6_k records it, and the replay runs the same head", () => {
    const file = path.join(tmp, "run-q6k.json");
    const run = bitnet([
      ...["run", "-m", tq1, "-p", "Once upon a time", "-n", "8", "--temp", "0"],
      ...["-t", "2", "--head", "q6_k", "--receipt", file],
    ]);
    expect(run.code, run.stderr).toBe(0);
    const receipt = JSON.parse(fs.readFileSync(file, "utf8")) as RunReceipt;
    expect(receipt.backend.options["head_q6_k"]).toBe(true);
    expect(receipt.backend.kernels.some((k) => k.id.endsWith(".output.q6_k.q8_k"))).toBe(true);
    const verify = bitnet(["verify-receipt", file, "-m", tq1, "--replay"]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(verify.stdout).toMatch(/replay\s+PASS\s+8 tokens reproduced exactly/);
    // Without the option the Q6_K head kernel is one the model cannot explain.
    const stripped = JSON.parse(fs.readFileSync(file, "utf8")) as RunReceipt;
    delete (stripped.backend.options as Record<string, unknown>)["head_q6_k"];
    const strippedFile = path.join(tmp, "run-q6k-stripped.json");
    fs.writeFileSync(strippedFile, JSON.stringify(stripped));
    const refused = bitnet(["verify-receipt", strippedFile, "-m", tq1]);
    expect(refused.code).not.toBe(0);
    expect(refused.stdout).toMatch(/kernels_match_model\s+FAIL.*reads Q6_K/);
  });

  it("a run with --tq1 direct reads TQ1_0 in place, records it, and replays", () => {
    const file = path.join(tmp, "run-tq1-direct.json");
    const run = bitnet([
      ...["run", "-m", tq1, "-p", "Once upon a time", "-n", "6", "--temp", "0"],
      ...["-t", "2", "--tq1", "direct", "--receipt", file],
    ]);
    expect(run.code, run.stderr).toBe(0);
    const receipt = JSON.parse(fs.readFileSync(file, "utf8")) as RunReceipt;
    expect(receipt.backend.options["tq1_direct"]).toBe(true);
    const ids = receipt.backend.kernels.map((k) => k.id);
    expect(ids.some((id) => id.endsWith(".linear.tq1_0.q8_k"))).toBe(true);
    expect(ids.some((id) => id.includes("tq1_0_as_tq2_0"))).toBe(false);
    const verify = bitnet(["verify-receipt", file, "-m", tq1, "--replay"]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(verify.stdout).toMatch(/replay\s+PASS\s+6 tokens reproduced exactly/);
    const bad = bitnet(["run", "-m", tq1, "-p", "x", "-n", "1", "--tq1", "packed"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("--tq1 must be one of repack, direct");
  });

  it("rejects edited token ids at the replay gate", () => {
    const file = tamper((r) => {
      r.generated_tokens[5] = (r.generated_tokens[5]! + 1) % r.model.vocab_size;
    });
    const verify = bitnet(["verify-receipt", file, "--replay", "-m", tq1]);
    expect(verify.code).toBe(1);
    expect(verify.stdout).toMatch(/replay\s+FAIL\s+token 5 differs/);
    expect(verify.stderr).toContain("RECEIPT_REJECTED");
  });

  it("a replay without -m hashes the receipt's own model path first, and refuses another file", () => {
    const same = bitnet(["verify-receipt", receiptFile, "--replay"]);
    expect(same.code, same.stdout + same.stderr).toBe(0);
    expect(same.stdout).toMatch(/model_file\s+PASS/);
    expect(same.stdout).toMatch(/replay\s+PASS/);
    const other = path.join(tmp, "other.gguf");
    fs.copyFileSync(tq1, other);
    fs.appendFileSync(other, Buffer.alloc(32)); // a different file at the recorded path
    const moved = bitnet(["verify-receipt", tamper((r) => (r.model.path = other)), "--replay"]);
    expect(moved.code).toBe(1);
    expect(moved.stdout).toMatch(/model_file\s+FAIL/);
    expect(moved.stdout).toMatch(/replay\s+SKIP\s+an earlier gate failed/);
  });

  it("rejects a swapped model hash and an impossible kernel list by name", () => {
    const swapped = bitnet([
      "verify-receipt",
      tamper((r) => (r.model.sha256 = "ab".repeat(32))),
      "-m",
      tq1,
    ]);
    expect(swapped.code).toBe(1);
    expect(swapped.stdout).toMatch(/model_file\s+FAIL\s+sha256/);
    const kernels = bitnet([
      "verify-receipt",
      tamper((r) => {
        for (const k of r.backend.kernels) {
          k.id = k.id.replace("tq1_0_as_tq2_0", "i2_s");
        }
      }),
    ]);
    expect(kernels.code).toBe(1);
    expect(kernels.stdout).toMatch(/kernels_match_model\s+FAIL/);
  });

  it("bench receipts verify too (and say replay does not apply)", () => {
    const file = path.join(tmp, "bench.json");
    const bench = bitnet([
      "bench",
      "-m",
      tq1,
      "-p",
      "16",
      "-n",
      "4",
      "-r",
      "1",
      "-t",
      "2",
      "--receipt",
      file,
    ]);
    expect(bench.code, bench.stderr).toBe(0);
    const verify = bitnet(["verify-receipt", file, "--replay"]);
    expect(verify.code, verify.stdout).toBe(0);
    expect(verify.stdout).toMatch(/replay\s+SKIP\s+bench receipts/);
  });

  it("reports an unreadable receipt clearly", () => {
    fs.writeFileSync(path.join(tmp, "bad.json"), "{ not json");
    const r = bitnet(["verify-receipt", path.join(tmp, "bad.json")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("could not read receipt");
  });
});
