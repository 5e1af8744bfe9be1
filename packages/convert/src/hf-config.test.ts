/**
 * Where config.json is silent or says more, the converter follows transformers: the defaults of
 * the config class that reads the checkpoint (BitNetConfig for the 2B-4T layouts, LlamaConfig
 * for 1bitLLM), tie_word_embeddings over a saved lm_head, and projections whose rows do not fit
 * the ternary type's blocks written in a float type that holds the same values (as llama.cpp's
 * converter does). Each checkpoint here is written by the test itself: a tiny config.json, a
 * model.safetensors of f32 master weights and a minimal byte-level BPE tokenizer.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { loadModel } from "@bitnet-ts/engine-core";
import { isBitnetError } from "@bitnet-ts/errors";
import { type GgufFile, readGgufFile } from "@bitnet-ts/gguf";
import { decodeF16, decodeF32, f16ToF32, f32ToF16 } from "@bitnet-ts/quantization";
import { encodeSafetensors, type SafetensorsTensor } from "@bitnet-ts/safetensors";
import { afterAll, describe, expect, it } from "vitest";
import { absmean } from "./checkpoint";
import { CONFIG_DEFAULTS, type HfConfig, resolveConfig } from "./config";
import { type ConvertOptions, convertCheckpoint } from "./convert";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "convert-hf-config-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** 62 single-character tokens, then <s> and </s>. */
const BASE_TOKENS = [..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"];
const VOCAB = BASE_TOKENS.length + 2;

interface Tiny {
  readonly layout: "bf16" | "1bitllm";
  readonly d?: number;
  readonly ff?: number;
  readonly nHead?: number;
  readonly nHeadKv?: number;
  readonly nLayer?: number;
  /** config.json keys to leave out. */
  readonly omit?: readonly string[];
  /** config.json keys to add or override. */
  readonly config?: Record<string, unknown>;
  /** Whether model.safetensors has an lm_head.weight, and if so whether it equals the embedding. */
  readonly lmHead?: "none" | "same" | "different";
}

/** Deterministic uniform values in [-1, 1). */
function values(seed: string, n: number): Float32Array {
  let h = 2166136261;
  for (const ch of seed) {
    h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
  }
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    h = (h + 0x6d2b79f5) >>> 0;
    let t = Math.imul(h ^ (h >>> 15), 1 | h);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * 2 - 1;
  }
  return out;
}

/** Writes a checkpoint folder and returns it with its f32 tensors by HF name. */
function writeTiny(
  name: string,
  o: Tiny,
): { dir: string; tensors: Map<string, Float32Array>; config: Record<string, unknown> } {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  const d = o.d ?? 256;
  const ff = o.ff ?? 512;
  const nHead = o.nHead ?? 4;
  const nHeadKv = o.nHeadKv ?? 2;
  const nLayer = o.nLayer ?? 1;
  const kv = (d / nHead) * nHeadKv;
  const tensors = new Map<string, Float32Array>();
  const shapes = new Map<string, number[]>();
  const add = (n: string, shape: number[], v: Float32Array): void => {
    tensors.set(n, v);
    shapes.set(n, shape);
  };
  const norm = (n: string, width: number): void =>
    add(
      n,
      [width],
      values(n, width).map((x) => 1 + 0.1 * x),
    );
  const matrix = (n: string, rows: number, cols: number, scale = 0.05): void =>
    add(
      n,
      [rows, cols],
      values(n, rows * cols).map((x) => scale * x),
    );
  matrix("model.embed_tokens.weight", VOCAB, d, 1);
  norm("model.norm.weight", d);
  for (let il = 0; il < nLayer; il++) {
    const p = `model.layers.${il}`;
    norm(`${p}.input_layernorm.weight`, d);
    norm(`${p}.post_attention_layernorm.weight`, d);
    if (o.layout === "1bitllm") {
      norm(`${p}.self_attn.inner_attn_ln.weight`, d);
      norm(`${p}.mlp.ffn_layernorm.weight`, ff);
    } else {
      norm(`${p}.self_attn.attn_sub_norm.weight`, d);
      norm(`${p}.mlp.ffn_sub_norm.weight`, ff);
    }
    matrix(`${p}.self_attn.q_proj.weight`, d, d);
    matrix(`${p}.self_attn.k_proj.weight`, kv, d);
    matrix(`${p}.self_attn.v_proj.weight`, kv, d);
    matrix(`${p}.self_attn.o_proj.weight`, d, d);
    matrix(`${p}.mlp.gate_proj.weight`, ff, d);
    matrix(`${p}.mlp.up_proj.weight`, ff, d);
    matrix(`${p}.mlp.down_proj.weight`, d, ff);
  }
  const lmHead = o.lmHead ?? "none";
  if (lmHead === "same") {
    add("lm_head.weight", [VOCAB, d], tensors.get("model.embed_tokens.weight")!.slice());
  } else if (lmHead === "different") {
    matrix("lm_head.weight", VOCAB, d, 1);
  }
  const st: SafetensorsTensor[] = [...tensors].map(([n, v]) => ({
    name: n,
    dtype: "F32",
    shape: shapes.get(n)!,
    data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength),
  }));
  fs.writeFileSync(path.join(dir, "model.safetensors"), encodeSafetensors(st, { format: "pt" }));
  const config: Record<string, unknown> = {
    architectures: [o.layout === "1bitllm" ? "BitnetForCausalLM" : "BitNetForCausalLM"],
    model_type: o.layout === "1bitllm" ? "llama" : "bitnet",
    vocab_size: VOCAB,
    hidden_size: d,
    intermediate_size: ff,
    num_hidden_layers: nLayer,
    num_attention_heads: nHead,
    num_key_value_heads: nHeadKv,
    hidden_act: o.layout === "1bitllm" ? "silu" : "relu2",
    max_position_embeddings: 128,
    rms_norm_eps: 1e-5,
    rope_theta: o.layout === "1bitllm" ? 10000 : 500000,
    tie_word_embeddings: lmHead === "none",
    ...o.config,
  };
  for (const key of o.omit ?? []) {
    delete config[key];
  }
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config));
  fs.writeFileSync(
    path.join(dir, "tokenizer.json"),
    JSON.stringify({
      version: "1.0",
      added_tokens: [
        { id: VOCAB - 2, content: "<s>", special: true },
        { id: VOCAB - 1, content: "</s>", special: true },
      ],
      model: {
        type: "BPE",
        vocab: Object.fromEntries(BASE_TOKENS.map((t, i) => [t, i])),
        merges: [],
      },
    }),
  );
  fs.writeFileSync(
    path.join(dir, "tokenizer_config.json"),
    JSON.stringify({ bos_token: "<s>", eos_token: "</s>" }),
  );
  return { dir, tensors, config };
}

async function convert(
  dir: string,
  name: string,
  options: ConvertOptions,
): Promise<{ file: GgufFile; out: string; notes: readonly string[] }> {
  const out = path.join(tmp, `${name}.gguf`);
  const summary = await convertCheckpoint(dir, out, options);
  return { file: await readGgufFile(out, { tensorData: true }), out, notes: summary.notes };
}

describe("config.json keys it leaves out get transformers' defaults", () => {
  it("a 2B-4T checkpoint without rope_theta gets BitNetConfig's 500000 (not 10000)", async () => {
    const ck = writeTiny("no-rope-bitnet", { layout: "bf16", omit: ["rope_theta"] });
    for (const [type, A] of [
      ["I2_S", "bitnet-b1.58"],
      ["TQ2_0", "bitnet"],
    ] as const) {
      const { file, notes } = await convert(ck.dir, `no-rope-${type}`, { type });
      expect(file.metadata.getNumber(`${A}.rope.freq_base`)).toBe(500000);
      expect(notes.join("\n")).toContain("rope_theta 500000");
      expect(notes.join("\n")).toContain("BitNetConfig");
    }
  });

  it("a 2B-4T checkpoint silent on eps, context, activation and tying gets BitNetConfig's values", async () => {
    const ck = writeTiny("silent-bitnet", {
      layout: "bf16",
      omit: [
        "rope_theta",
        "rms_norm_eps",
        "max_position_embeddings",
        "hidden_act",
        "tie_word_embeddings",
      ],
    });
    const { file } = await convert(ck.dir, "silent-bitnet", { type: "I2_S" });
    const md = file.metadata;
    expect(md.getNumber("bitnet-b1.58.rope.freq_base")).toBe(500000);
    expect(md.getNumber("bitnet-b1.58.attention.layer_norm_rms_epsilon")).toBe(Math.fround(1e-5));
    expect(md.getCount("bitnet-b1.58.context_length")).toBe(2048);
    // relu2, the arch's own activation: nothing extra written.
    expect(md.has("bitnet-b1.58.hidden_act")).toBe(false);
    // tie_word_embeddings defaults to false, but there is no lm_head: tied, as llama.cpp loads it.
    expect(file.tensors.some((t) => t.name === "output.weight")).toBe(false);
  });

  it("a 1bitLLM checkpoint gets LlamaConfig's defaults (rope_theta 10000, eps 1e-6, silu)", async () => {
    const ck = writeTiny("silent-1bitllm", {
      layout: "1bitllm",
      lmHead: "different",
      omit: [
        "rope_theta",
        "rms_norm_eps",
        "max_position_embeddings",
        "hidden_act",
        "num_key_value_heads",
      ],
      nHeadKv: 4,
    });
    const { file, notes } = await convert(ck.dir, "silent-1bitllm", { type: "TQ2_0" });
    const md = file.metadata;
    expect(md.getNumber("bitnet.rope.freq_base")).toBe(10000);
    expect(md.getNumber("bitnet.attention.layer_norm_rms_epsilon")).toBe(Math.fround(1e-6));
    expect(md.getCount("bitnet.context_length")).toBe(2048);
    expect(md.getCount("bitnet.attention.head_count_kv")).toBe(4); // = num_attention_heads
    expect(md.has("bitnet.hidden_act")).toBe(false); // silu, what arch bitnet implies
    expect(notes.join("\n")).toContain("LlamaConfig");
  });

  it("reads rope_parameters.rope_theta (transformers' newer config.json)", async () => {
    const ck = writeTiny("rope-parameters", {
      layout: "bf16",
      omit: ["rope_theta"],
      config: { rope_parameters: { rope_type: "default", rope_theta: 250000 } },
    });
    const { file, notes } = await convert(ck.dir, "rope-parameters", { type: "TQ2_0" });
    expect(file.metadata.getNumber("bitnet.rope.freq_base")).toBe(250000);
    expect(notes.join("\n")).not.toContain("rope_theta");
  });

  it("num_key_value_heads: BitNetConfig's default 5, LlamaConfig's num_attention_heads, null = num_attention_heads", () => {
    const base = {
      vocab_size: 64,
      hidden_size: 640,
      intermediate_size: 1024,
      num_hidden_layers: 1,
      num_attention_heads: 20,
    } as HfConfig;
    expect(resolveConfig(base, "BitNetConfig").nHeadKv).toBe(5);
    expect(resolveConfig(base, "LlamaConfig").nHeadKv).toBe(20);
    expect(resolveConfig({ ...base, num_key_value_heads: null }, "BitNetConfig").nHeadKv).toBe(20);
    expect(CONFIG_DEFAULTS.BitNetConfig.rope_theta).toBe(500000);
    expect(CONFIG_DEFAULTS.LlamaConfig.rope_theta).toBe(10000);
    let error: unknown;
    try {
      resolveConfig({ ...base, num_attention_heads: 4 }, "BitNetConfig");
    } catch (e) {
      error = e;
    }
    expect(isBitnetError(error) && error.code).toBe("CONVERT_BAD_CONFIG");
    expect((error as Error).message).toContain("BitNetConfig's default is 5");
  });
});

describe("tie_word_embeddings decides whether the head is the embedding", () => {
  it("true: no output.weight even when the checkpoint saved a different lm_head", async () => {
    const ck = writeTiny("tied-with-head", {
      layout: "bf16",
      lmHead: "different",
      config: { tie_word_embeddings: true },
    });
    for (const type of ["I2_S", "TQ2_0"] as const) {
      const { file, notes } = await convert(ck.dir, `tied-with-head-${type}`, { type });
      expect(file.tensors.map((t) => t.name)).not.toContain("output.weight");
      expect(file.tensors).toHaveLength(2 + 11);
      expect(notes.join("\n")).toContain("lm_head.weight is ignored");
    }
  });

  it("false or absent (BitNetConfig's default): a different lm_head is written as output.weight", async () => {
    for (const [name, config, omit] of [
      ["explicit", { tie_word_embeddings: false }, []],
      ["absent", {}, ["tie_word_embeddings"]],
    ] as const) {
      const ck = writeTiny(`untied-${name}`, {
        layout: "bf16",
        lmHead: "different",
        config,
        omit,
      });
      const { file } = await convert(ck.dir, `untied-${name}`, { type: "TQ2_0" });
      expect(
        file.tensors.map((t) => t.name),
        name,
      ).toContain("output.weight");
    }
  });
});

describe("projections whose rows do not fit the ternary type's blocks", () => {
  // ff = 320: ffn_gate/up rows are 256 wide (fine), ffn_down rows are 320 wide (not a multiple of 256).
  const ck = () => writeTiny("ff320", { layout: "bf16", ff: 320, nLayer: 2 });

  it.each(["TQ2_0", "TQ1_0"] as const)(
    "%s: ffn_down is written as F16 holding exactly the values the TQ blocks would, reported before writing; the file runs on the reference backend",
    { timeout: 120_000 },
    async (type) => {
      const { dir, tensors } = ck();
      const events: string[] = [];
      const { file, out, notes } = await convert(dir, `ff320-${type}`, {
        type,
        onLog: (m) => events.push(`log: ${m}`),
        onProgress: () => {
          if (events.at(-1) !== "progress") {
            events.push("progress");
          }
        },
      });
      for (const il of [0, 1]) {
        const message = `blk.${il}.ffn_down.weight: row length 320 is not a multiple of 256; written as F16.`;
        expect(notes).toContain(message);
        // Logged before the first byte is written.
        expect(events.indexOf(`log: ${message}`)).toBeGreaterThanOrEqual(0);
        expect(events.indexOf(`log: ${message}`)).toBeLessThan(events.indexOf("progress"));
        expect(file.tensor(`blk.${il}.ffn_down.weight`).type.name).toBe("F16");
        expect(file.tensor(`blk.${il}.ffn_down.weight`).shape).toEqual([320, 256]);
        expect(file.tensor(`blk.${il}.ffn_gate.weight`).type.name).toBe(type);
        expect(file.tensor(`blk.${il}.attn_q.weight`).type.name).toBe(type);
        // Lossless: ternary value × the f16 block scale a TQ type would store.
        const t = absmean(tensors.get(`model.layers.${il}.mlp.down_proj.weight`)!);
        const scale = f16ToF32(f32ToF16(t.scale));
        const got = decodeF16(file.tensorData(`blk.${il}.ffn_down.weight`));
        expect(got.length).toBe(t.values.length);
        for (let i = 0; i < got.length; i++) {
          if (got[i] !== t.values[i]! * scale) {
            expect.fail(`element ${i}: ${got[i]} != ${t.values[i]} × ${scale}`);
          }
        }
      }
      const model = await loadModel(out, { backend: "reference", contextLength: 16 });
      const seq = model.createSequence();
      const { runs } = await model.step([{ sequence: seq, tokens: [VOCAB - 2, 3, 7] }]);
      const logits = runs[0]!.logits;
      expect(logits.length).toBe(VOCAB);
      expect([...logits].every(Number.isFinite)).toBe(true);
      const next = await model.step([{ sequence: seq, tokens: [11] }]);
      expect([...next.runs[0]!.logits].every(Number.isFinite)).toBe(true);
      model.freeSequence(seq);
      await model.dispose();
    },
  );

  it("I2_S (128-element blocks, f32 scale): written as F32, exactly ternary × scale", {
    timeout: 120_000,
  }, async () => {
    const { dir, tensors } = ck();
    const { file, out, notes } = await convert(dir, "ff320-I2_S", { type: "I2_S" });
    expect(notes).toContain(
      "blk.0.ffn_down.weight: row length 320 is not a multiple of 128; written as F32.",
    );
    expect(file.tensor("blk.0.ffn_down.weight").type.name).toBe("F32");
    expect(file.tensor("blk.0.ffn_up.weight").type.name).toBe("I2_S");
    const t = absmean(tensors.get("model.layers.0.mlp.down_proj.weight")!);
    const got = decodeF32(file.tensorData("blk.0.ffn_down.weight"));
    expect(got).toEqual(Float32Array.from(t.values, (v) => v * t.scale));
    const model = await loadModel(out, { backend: "reference", contextLength: 16 });
    const seq = model.createSequence();
    const { runs } = await model.step([{ sequence: seq, tokens: [VOCAB - 2, 5] }]);
    expect([...runs[0]!.logits].every(Number.isFinite)).toBe(true);
    model.freeSequence(seq);
    await model.dispose();
  });

  it("an embedding type whose block does not fit hidden_size is refused before anything is written", async () => {
    const { dir } = writeTiny("d320", { layout: "bf16", d: 320, nHead: 5, nHeadKv: 5 });
    const out = path.join(tmp, "d320-q6k.gguf");
    const error = await convertCheckpoint(dir, out, { type: "TQ2_0", embed: "Q6_K" }).catch(
      (e: unknown) => e,
    );
    expect(isBitnetError(error) && error.code).toBe("CONVERT_BAD_OPTION");
    expect((error as Error).message).toContain("hidden_size 320");
    expect(fs.existsSync(out)).toBe(false);
    // With the default F16 embedding, every 320-wide projection falls back and the file loads.
    const { file, out: ok } = await convert(dir, "d320-f16", { type: "TQ2_0" });
    expect(file.tensor("blk.0.attn_q.weight").type.name).toBe("F16");
    expect(file.tensor("blk.0.ffn_down.weight").type.name).toBe("TQ2_0"); // rows of ff = 512
    const model = await loadModel(ok, { backend: "reference", contextLength: 16 });
    await model.dispose();
  });
});
