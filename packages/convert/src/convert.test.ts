/**
 * Conversion, proven against an oracle that never sees our GGUF: the fixtures write synthetic
 * Hugging Face checkpoints in each layout and return their weights as a float model reads them;
 * a float64 forward pass on those weights (SpecModel) must agree with our engine on the
 * converted file.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { argmaxOf, comparePosition, crossvalidate } from "@bitnet-ts/crossval";
import { type CompiledModel, loadModel, registerBackend } from "@bitnet-ts/engine-core";
import { isBitnetError } from "@bitnet-ts/errors";
import { type HfCheckpoint, type HfLayout, writeHfCheckpoint } from "@bitnet-ts/fixtures";
import { readGgufFile } from "@bitnet-ts/gguf";
import { SpecModel } from "@bitnet-ts/oracles";
import { encodeSafetensors, parseSafetensors } from "@bitnet-ts/safetensors";
import { Tokenizer } from "@bitnet-ts/tokenizers";
import { afterAll, describe, expect, it } from "vitest";
import { convertCheckpoint } from "./convert";
import { quantizeGguf } from "./quantize";

registerBackend("cpu", () => import("@bitnet-ts/kernels-cpu"));

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "convert-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const checkpoints = new Map<HfLayout, Promise<HfCheckpoint>>();
function checkpoint(layout: HfLayout): Promise<HfCheckpoint> {
  let c = checkpoints.get(layout);
  if (c === undefined) {
    c = writeHfCheckpoint(path.join(tmp, `hf-${layout}`), layout);
    checkpoints.set(layout, c);
  }
  return c;
}

const PROMPT_TEXT = "The capital of France is";

function argmax(x: ArrayLike<number>): number {
  return argmaxOf(x, 0, x.length);
}

/** Mean KL(oracle ‖ engine) and top-1 agreement over a prompt and its greedy continuation. */
async function compare(
  model: CompiledModel,
  oracle: SpecModel,
  tokens: number[],
  steps = 12,
): Promise<{ kl: number; top1: number }> {
  const seq = model.createSequence();
  const session = oracle.session();
  let klSum = 0;
  let agree = 0;
  let token = tokens[0]!;
  for (let i = 0; i < steps; i++) {
    const ours = (await model.step([{ sequence: seq, tokens: [token] }])).runs[0]!.logits;
    const ref = session.eval(token);
    const m = comparePosition(ref, 0, ours, 0, ref.length);
    klSum += m.kl;
    agree += m.top1 ? 1 : 0;
    token = i + 1 < tokens.length ? tokens[i + 1]! : argmax(ref);
  }
  model.freeSequence(seq);
  return { kl: klSum / steps, top1: agree / steps };
}

const CASES: [HfLayout, "I2_S" | "TQ2_0" | "TQ1_0", number][] = [
  // [layout, type, bound on KL between our f64 backend and the oracle with the same activation quantization]
  ["packed", "I2_S", 1e-9], // bf16 scales and norms are exact in I2_S/F32: only summation order differs
  ["packed", "TQ2_0", 1e-9], // a bf16 scale is an f16 value: exact in TQ blocks too
  ["bf16", "I2_S", 1e-9], // absmean scale (f32) is stored exactly
  ["bf16", "TQ1_0", 1e-4], // the f32 absmean scale rounds to f16 in TQ blocks
  ["1bitllm", "TQ2_0", 1e-4],
];

describe.each(CASES)("bitnet convert: %s checkpoint → %s", (layout, type, bound) => {
  it("computes what a float implementation on the checkpoint's weights computes", {
    timeout: 180_000,
  }, async () => {
    const ck = await checkpoint(layout);
    const out = path.join(tmp, `${layout}-${type}.gguf`);
    const summary = await convertCheckpoint(ck.dir, out, { type });
    expect(summary.layout).toBe(layout);
    const file = await readGgufFile(out);
    expect(file.tensor("blk.0.attn_q.weight").type.name).toBe(type);
    const ffnActivation = ck.hiddenAct;
    // 1. Exactness of the conversion: our float64 backend against the float64 oracle with the
    //    same activation quantization (per-token int8 for I2_S, Q8_K blocks for TQ types).
    const f64 = await loadModel(out, {
      backend: "reference-f64",
      contextLength: 64,
      ffnActivation,
    });
    const tokenizer = Tokenizer.fromGguf(f64.description.file.metadata);
    const tokens = tokenizer.encode(PROMPT_TEXT);
    const sameQuant = SpecModel.fromWeights(ck.weights, {
      ffnActivation,
      activationQuant: type === "I2_S" ? "per-token-int8" : "q8_k",
    });
    const exact = await compare(f64, sameQuant, tokens);
    expect(exact.kl, `KL ${exact.kl}`).toBeLessThan(bound);
    expect(exact.top1).toBe(1);
    await f64.dispose();
    // 2. The engine as users run it (native kernels, ggml numerics) against the checkpoint's own
    //    semantics (transformers: per-token int8 activations).
    const cpu = await loadModel(out, { backend: "cpu", contextLength: 64, ffnActivation });
    const hf = SpecModel.fromWeights(ck.weights, {
      ffnActivation,
      activationQuant: "per-token-int8",
    });
    const native = await compare(cpu, hf, tokens);
    expect(native.top1).toBeGreaterThanOrEqual(0.9);
    expect(native.kl).toBeLessThan(0.05);
    await cpu.dispose();
  });
});

describe("bitnet convert: files and metadata", () => {
  it("writes byte-identical files for the same checkpoint", { timeout: 120_000 }, async () => {
    const ck = await checkpoint("packed");
    const a = path.join(tmp, "twice-a.gguf");
    const b = path.join(tmp, "twice-b.gguf");
    await convertCheckpoint(ck.dir, a, { type: "I2_S" });
    await convertCheckpoint(ck.dir, b, { type: "I2_S" });
    const hash = (f: string) =>
      crypto.createHash("sha256").update(fs.readFileSync(f)).digest("hex");
    expect(hash(a)).toBe(hash(b));
  });

  it("carries the tokenizer over: the converted file tokenizes like the fixture it came from", {
    timeout: 120_000,
  }, async () => {
    const corpus = fs
      .readFileSync(
        path.resolve(import.meta.dirname, "../../../fixtures/tokenizer-corpus.jsonl"),
        "utf8",
      )
      .split("\n")
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as string);
    for (const [layout, type] of [
      ["packed", "I2_S"],
      ["1bitllm", "TQ2_0"],
    ] as const) {
      const ck = await checkpoint(layout);
      const out = path.join(tmp, `tok-${layout}.gguf`);
      await convertCheckpoint(ck.dir, out, { type });
      const converted = Tokenizer.fromGguf((await readGgufFile(out)).metadata);
      const { buildFixture, PRESETS } = await import("@bitnet-ts/fixtures");
      const original = Tokenizer.fromGguf(
        (await import("@bitnet-ts/gguf")).parseGguf(
          await buildFixture(PRESETS[layout === "1bitllm" ? "tiny-spm" : "tiny-i2s"]!).toBytes(),
        ).metadata,
      );
      for (const line of corpus) {
        expect(converted.encode(line), `${layout}: ${line}`).toEqual(original.encode(line));
      }
      expect(converted.bos).toBe(original.bos);
      expect(converted.eos).toBe(original.eos);
    }
  });

  it("writes the converter's metadata keys for each arch", { timeout: 120_000 }, async () => {
    const ck = await checkpoint("packed");
    const i2sPath = path.join(tmp, "packed-i2s-meta.gguf");
    await convertCheckpoint(ck.dir, i2sPath, { type: "I2_S" });
    const i2s = await readGgufFile(i2sPath);
    expect(i2s.metadata.getString("general.architecture")).toBe("bitnet-b1.58");
    expect(i2s.metadata.getCount("general.file_type")).toBe(40);
    expect(i2s.metadata.has("tokenizer.ggml.pre")).toBe(false);
    const tq = path.join(tmp, "packed-tq2-meta.gguf");
    const summary = await convertCheckpoint(ck.dir, tq, { type: "TQ2_0" });
    const md = (await readGgufFile(tq)).metadata;
    expect(md.getString("general.architecture")).toBe("bitnet");
    expect(md.getCount("general.file_type")).toBe(37);
    expect(md.getString("tokenizer.ggml.pre")).toBe("llama-bpe");
    expect(md.getString("bitnet.rope.scaling.type")).toBe("linear");
    // A relu² checkpoint under the mainline arch says so, for engines that read it.
    expect(md.getString("bitnet.hidden_act")).toBe("relu2");
    expect(summary.notes.join(" ")).toContain("relu2");
  });
});

describe("bitnet quantize", () => {
  it("converts I2_S → TQ2_0 → TQ1_0 → I2_S losslessly (byte-identical projections)", {
    timeout: 120_000,
  }, async () => {
    const ck = await checkpoint("packed");
    const src = path.join(tmp, "q-src.gguf");
    await convertCheckpoint(ck.dir, src, { type: "I2_S" });
    const steps = ["TQ2_0", "TQ1_0", "I2_S"] as const;
    let from = src;
    for (const [i, type] of steps.entries()) {
      const to = path.join(tmp, `q-${i}-${type}.gguf`);
      await quantizeGguf(from, to, { type });
      from = to;
    }
    const a = await readGgufFile(src, { tensorData: true });
    const b = await readGgufFile(from, { tensorData: true });
    expect(b.tensors.map((t) => t.name)).toEqual(a.tensors.map((t) => t.name));
    for (const t of a.tensors) {
      expect(
        Buffer.compare(Buffer.from(a.tensorData(t)), Buffer.from(b.tensorData(t.name))),
        t.name,
      ).toBe(0);
    }
  });

  it("refuses a lossy scale change unless asked, and reports how lossy it was", {
    timeout: 120_000,
  }, async () => {
    const ck = await checkpoint("bf16");
    const src = path.join(tmp, "lossy-src.gguf");
    await convertCheckpoint(ck.dir, src, { type: "I2_S" });
    await expect(
      quantizeGguf(src, path.join(tmp, "lossy.gguf"), { type: "TQ2_0" }),
    ).rejects.toMatchObject({ code: "CONVERT_LOSSY" });
    const summary = await quantizeGguf(src, path.join(tmp, "lossy.gguf"), {
      type: "TQ2_0",
      allowLossy: true,
    });
    expect(summary.maxScaleChange).toBeGreaterThan(0);
    expect(summary.maxScaleChange).toBeLessThan(2 ** -10);
  });

  it.each(["Q8_0", "Q6_K"] as const)(
    "requantizes the embedding to %s; the CPU backend runs it with the same greedy tokens",
    { timeout: 120_000 },
    async (embed) => {
      const ck = await checkpoint("packed");
      const src = path.join(tmp, "embed-src.gguf");
      if (!fs.existsSync(src)) {
        await convertCheckpoint(ck.dir, src, { type: "I2_S" });
      }
      const out = path.join(tmp, `embed-${embed}.gguf`);
      const from = (await readGgufFile(src)).tensor("token_embd.weight").type.name;
      const summary = await quantizeGguf(src, out, { embed });
      expect((await readGgufFile(out)).tensor("token_embd.weight").type.name).toBe(embed);
      // The summary says what the re-encoding cost: a few tenths of a percent, never "exact".
      expect(summary.embeddings).toHaveLength(1);
      const change = summary.embeddings[0]!;
      expect(change).toMatchObject({ name: "token_embd.weight", from, to: embed });
      expect(change.maxAbsError).toBeGreaterThan(0);
      expect(change.relativeRmsError).toBeGreaterThan(0);
      expect(change.relativeRmsError).toBeLessThan(embed === "Q8_0" ? 0.01 : 0.03);
      const a = await loadModel(src, { backend: "cpu", contextLength: 64 });
      const b = await loadModel(out, { backend: "cpu", contextLength: 64 });
      const tokens = Tokenizer.fromGguf(a.description.file.metadata).encode(PROMPT_TEXT);
      const greedy = async (m: CompiledModel) => {
        const seq = m.createSequence();
        let { runs } = await m.step([{ sequence: seq, tokens }]);
        const out: number[] = [];
        for (let i = 0; i < 8; i++) {
          out.push(argmax(runs[0]!.logits));
          ({ runs } = await m.step([{ sequence: seq, tokens: [out.at(-1)!] }]));
        }
        return out;
      };
      expect(await greedy(b)).toEqual(await greedy(a));
      // Both heads run on llama.cpp's integer dots: Q8_0 × Q8_0, Q6_K × Q8_K.
      const kernel = embed === "Q8_0" ? ".output.q8_0" : ".output.q6_k.q8_k";
      expect([...b.kernelCounts().keys()].some((k) => k.endsWith(kernel))).toBe(true);
      await a.dispose();
      await b.dispose();
    },
  );
});

describe("quantize --embed f32", () => {
  it("re-encodes an f16 embedding exactly, and the summary says so", async () => {
    const ck = await checkpoint("packed");
    const src = path.join(tmp, "embed-src.gguf"); // shared with the tests above
    if (!fs.existsSync(src)) {
      await convertCheckpoint(ck.dir, src, { type: "I2_S" });
    }
    const file = await readGgufFile(src);
    expect(file.tensor("token_embd.weight").type.name).toBe("F16");
    const summary = await quantizeGguf(src, path.join(tmp, "embed-f32.gguf"), { embed: "F32" });
    expect(summary.embeddings).toEqual([
      {
        name: "token_embd.weight",
        from: "F16",
        to: "F32",
        maxAbsError: 0,
        relativeRmsError: 0,
      },
    ]);
  });
});

describe("the converted TQ2_0 file against llama.cpp", () => {
  it("passes crossval (1bitLLM layout, SiLU as mainline computes it)", {
    timeout: 240_000,
  }, async () => {
    const ck = await checkpoint("1bitllm");
    const out = path.join(tmp, "crossval-tq2.gguf");
    await convertCheckpoint(ck.dir, out, { type: "TQ2_0" });
    const prompts = fs
      .readFileSync(
        path.resolve(import.meta.dirname, "../../../fixtures/crossval-prompts.txt"),
        "utf8",
      )
      .split("\n")
      .filter((l) => l.trim())
      .slice(0, 3);
    const report = await crossvalidate(out, prompts, { nTokens: 12 });
    const [ours, yardstick] = report.engines;
    expect(ours!.summary.top1Agreement).toBeGreaterThanOrEqual(0.9);
    expect(ours!.summary.meanKl).toBeLessThanOrEqual(Math.max(2 * yardstick!.summary.meanKl, 1e-6));
    expect(report.llamaSelf.top1Agreement).toBeGreaterThanOrEqual(0.99);
  });
});

describe("bad checkpoints get a typed error naming what is wrong", () => {
  function code(fn: () => Promise<unknown>): Promise<string | undefined> {
    return fn().then(
      () => undefined,
      (e: unknown) => (isBitnetError(e) ? e.code : `untyped: ${String(e)}`),
    );
  }
  async function broken(name: string, edit: (dir: string) => void): Promise<string> {
    const ck = await checkpoint("packed");
    const dir = path.join(tmp, `broken-${name}`);
    fs.cpSync(ck.dir, dir, { recursive: true });
    edit(dir);
    return dir;
  }
  const editConfig = (dir: string, f: (c: Record<string, unknown>) => void) => {
    const file = path.join(dir, "config.json");
    const c = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
    f(c);
    fs.writeFileSync(file, JSON.stringify(c));
  };

  it.each([
    [
      "no config.json",
      (dir: string) => fs.rmSync(path.join(dir, "config.json")),
      "CONVERT_MISSING_FILE",
      "config.json",
    ],
    [
      "a config without hidden_size",
      (dir: string) => editConfig(dir, (c) => delete c["hidden_size"]),
      "CONVERT_BAD_CONFIG",
      "hidden_size",
    ],
    [
      "a wrong intermediate_size",
      (dir: string) => editConfig(dir, (c) => (c["intermediate_size"] = 1024)),
      "CONVERT_BAD_TENSOR",
      "[1024",
    ],
    [
      "an unknown activation",
      (dir: string) => editConfig(dir, (c) => (c["hidden_act"] = "gelu")),
      "CONVERT_BAD_CONFIG",
      "gelu",
    ],
    [
      "no tokenizer",
      (dir: string) => fs.rmSync(path.join(dir, "tokenizer.json")),
      "CONVERT_MISSING_FILE",
      "tokenizer",
    ],
    [
      "no weights",
      (dir: string) => fs.rmSync(path.join(dir, "model.safetensors")),
      "CONVERT_MISSING_FILE",
      "model.safetensors",
    ],
    [
      "a missing weight_scale",
      (dir: string) => {
        const file = path.join(dir, "model.safetensors");
        const st = parseSafetensors(new Uint8Array(fs.readFileSync(file)));
        const kept = [...st.tensors.values()]
          .filter((t) => t.name !== "model.layers.1.mlp.down_proj.weight_scale")
          .map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: st.read(t.name) }));
        fs.writeFileSync(file, encodeSafetensors(kept));
      },
      "CONVERT_MISSING_TENSOR",
      "down_proj.weight_scale",
    ],
  ])("%s", { timeout: 60_000 }, async (_what, edit, expected, mention) => {
    const dir = await broken(String(_what).replace(/\W+/g, "-"), edit as (dir: string) => void);
    let message = "";
    const got = await code(() =>
      convertCheckpoint(dir, path.join(tmp, "never.gguf"), { type: "I2_S" }).catch((e: Error) => {
        message = e.message;
        throw e;
      }),
    );
    expect(got).toBe(expected);
    expect(message).toContain(mention);
    expect(fs.existsSync(path.join(tmp, "never.gguf"))).toBe(false);
  });

  it("refuses I2_S under the mainline arch", async () => {
    const ck = await checkpoint("packed");
    expect(
      await code(() =>
        convertCheckpoint(ck.dir, path.join(tmp, "never.gguf"), { type: "I2_S", arch: "bitnet" }),
      ),
    ).toBe("CONVERT_BAD_OPTION");
  });
});
