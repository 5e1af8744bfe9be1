import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LlamaCannotLoadError } from "./errors";
import { openLlamaBench } from "./llama-bench";
import { assertLlamaCanLoad } from "./llama-loadable";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "crossval-loadable-"));
const i2s = path.join(tmp, "tiny-i2s.gguf");
const tq2 = path.join(tmp, "tiny-tq2.gguf");
beforeAll(async () => {
  await writeFixture(PRESETS["tiny-i2s"]!, i2s);
  await writeFixture(PRESETS["tiny-tq2"]!, tq2);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("whether llama.cpp can load a file", () => {
  it("passes TQ2_0 files and refuses I2_S ones with a typed error that says what to do", async () => {
    expect(() => assertLlamaCanLoad(tq2)).not.toThrow();
    let error: unknown;
    try {
      assertLlamaCanLoad(i2s);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(LlamaCannotLoadError);
    expect((error as LlamaCannotLoadError).code).toBe("CROSSVAL_LLAMA_CANNOT_LOAD");
    expect((error as LlamaCannotLoadError).types).toEqual(["I2_S"]);
    expect((error as Error).message).toContain("tiny-i2s.gguf");
    expect((error as Error).message).toContain("bitnet quantize <in.gguf> <out.gguf> tq2_0");
    // The library entry refuses it too, before node-llama-cpp is even loaded.
    await expect(openLlamaBench(i2s, { threads: 1 })).rejects.toBeInstanceOf(LlamaCannotLoadError);
  });

  it("reports a file that is not GGUF as the GGUF reader's typed error", () => {
    const bad = path.join(tmp, "bad.gguf");
    fs.writeFileSync(bad, "not a gguf file at all");
    expect(() => assertLlamaCanLoad(bad)).toThrow(/GGUF|magic/i);
  });
});
