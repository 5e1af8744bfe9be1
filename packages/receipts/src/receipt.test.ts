import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatVerifyReport } from "./format";
import { sha256File } from "./hash";
import { type KernelRules, ONE_CALL_PER_PROJECTION } from "./rules";
import { RECEIPT_SCHEMA_VERSION, type RunReceipt, receiptJsonSchema } from "./schema";
import { type GateName, type VerifyOptions, verifyReceipt } from "./verify";

/**
 * Rules shaped like the CPU backend's (its package declares the real ones and checks a real run's
 * receipt against them): ids "cpu.<path>.<op>.<type>", seven projections per layer.
 */
const CPU_LIKE: KernelRules = {
  backends: ["cpu"],
  idPrefix: "cpu.",
  kernelPaths: { avx2: ["avx2"], avx512vnni: ["avx512vnni"], amx: ["amx", "avx512vnni"] },
  pathSegment: 1,
  ternaryTags: { I2_S: [".linear.i2_s."], TQ2_0: [".linear.tq2_0."] },
  outputTag: ".output.",
  headOptions: { head_q8_0: "Q8_0" },
  calls: ONE_CALL_PER_PROJECTION,
};

/** verifyReceipt with the CPU-like rules unless the test says otherwise. */
function verify(value: unknown, options: VerifyOptions = {}) {
  return verifyReceipt(value, { kernelRules: CPU_LIKE, ...options });
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "receipts-"));
const modelPath = path.join(tmp, "tiny-i2s.gguf");
let sha = "";
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
beforeAll(async () => {
  await writeFixture(PRESETS["tiny-i2s"]!, modelPath);
  sha = await sha256File(modelPath);
});

/** A receipt as `bitnet run` writes it for tiny-i2s: 6 prompt tokens, 8 generated, 8 steps. */
function receipt(): RunReceipt {
  const layers = 2;
  const steps = 8;
  return {
    schema_version: RECEIPT_SCHEMA_VERSION,
    kind: "run",
    tool: { name: "bitnet-ts", version: "0.0.0", git_commit: null },
    created_at: "2026-11-23T15:39:39.767Z",
    compute_path: "real",
    device: {
      cpu_model: "Intel(R) Xeon(R) Processor",
      cpu_vendor: "GenuineIntel",
      features: ["avx2", "avx512f"],
      physical_cores: 2,
      logical_cores: 2,
      memory_bytes: 25_276_502_016,
      os: "linux 6.18",
      arch: "x64",
      node: "v20.20.2",
    },
    model: {
      path: modelPath,
      size_bytes: fs.statSync(modelPath).size,
      sha256: sha,
      architecture: "bitnet-b1.58",
      tensor_types: { F16: 1, F32: 9, I2_S: 14 },
      n_layer: layers,
      vocab_size: 128256,
      params: 34_344_192,
    },
    backend: {
      name: "cpu",
      kernel_path: "avx512vnni",
      threads: 2,
      options: {},
      kernels: [
        { id: "cpu.avx512vnni.add.f32", calls: 2 * layers * steps },
        { id: "cpu.avx512vnni.attention.gqa.f16kv", calls: layers * steps },
        { id: "cpu.avx512vnni.embed.f16", calls: steps },
        { id: "cpu.avx512vnni.glu.relu2", calls: layers * steps },
        { id: "cpu.avx512vnni.linear.i2_s.i8", calls: 7 * layers * steps },
        { id: "cpu.avx512vnni.output.f16", calls: steps },
        { id: "cpu.avx512vnni.rms_norm.f32", calls: (4 * layers + 1) * steps },
        { id: "cpu.avx512vnni.rope.neox", calls: 2 * layers * steps },
      ],
    },
    context_length: 4096,
    sampling: {
      temperature: 0.7,
      top_k: 40,
      top_p: 0.95,
      min_p: 0.05,
      typical_p: 1,
      repeat_penalty: 1,
      repeat_last_n: 64,
      presence_penalty: 0,
      frequency_penalty: 0,
      seed: 42,
      max_tokens: 8,
      ignore_eos: false,
      stop: [],
    },
    prompt_tokens: [128000, 791, 6864, 315, 9822, 374],
    generated_tokens: [3281, 1427, 1701, 2543, 2163, 2961, 1153, 3156],
    finish_reason: "length",
    timings: {
      load_ms: 837,
      prefill_ms: 14.6,
      decode_ms: 116.3,
      prefill_tokens_per_second: (6 * 1000) / 14.6,
      decode_tokens_per_second: (7 * 1000) / 116.3,
    },
    bench: null,
  };
}

function failed(report: { gates: readonly { gate: GateName; status: string }[] }): GateName[] {
  return report.gates.filter((g) => g.status === "fail").map((g) => g.gate);
}

describe("receipt gates", () => {
  it("pass a consistent receipt, with the model file checked", async () => {
    const report = await verify(receipt(), { modelPath });
    expect(failed(report)).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.gates.find((g) => g.gate === "model_file")!.status).toBe("pass");
    expect(report.gates.find((g) => g.gate === "replay")!.status).toBe("skip");
    expect(formatVerifyReport(report, "r.json")).toContain(
      "VERIFIED: r.json passed 8 gates (1 skipped)",
    );
  });

  const tampered: [string, GateName, (r: RunReceipt) => void][] = [
    ["an unknown field", "schema", (r) => Object.assign(r, { extra: 1 })],
    ["a wrong schema version", "schema", (r) => Object.assign(r, { schema_version: "0.9.0" })],
    ["a mocked compute path", "schema", (r) => Object.assign(r, { compute_path: "mock" })],
    ["an empty kernel list", "kernels", (r) => r.backend.kernels.splice(0)],
    [
      "a kernel from another backend",
      "kernels",
      (r) => r.backend.kernels.push({ id: "ref.linear.i2_s.i8", calls: 1 }),
    ],
    [
      "a kernel on another SIMD path",
      "kernels",
      (r) => (r.backend.kernels[0]!.id = "cpu.avx2.add.f32"),
    ],
    [
      "a TQ2_0 kernel on an I2_S model",
      "kernels_match_model",
      (r) => (r.backend.kernels[4]!.id = "cpu.avx512vnni.linear.tq2_0.q8_k"),
    ],
    [
      "a Q8_0 head the model does not have",
      "kernels_match_model",
      (r) => (r.backend.kernels[5]!.id = "cpu.avx512vnni.output.q8_0"),
    ],
    [
      "projection calls that do not add up",
      "kernel_calls",
      (r) => (r.backend.kernels[4]!.calls -= 1),
    ],
    [
      "more steps than tokens",
      "kernel_calls",
      (r) => {
        for (const k of r.backend.kernels) {
          k.calls *= 2;
        }
      },
    ],
    ["a token id outside the vocabulary", "tokens", (r) => (r.generated_tokens[3] = 200_000)],
    ["more tokens than max_tokens", "tokens", (r) => r.generated_tokens.push(5)],
    ["an inflated decode speed", "timings", (r) => (r.timings.decode_tokens_per_second *= 2)],
    ["a date in the future", "timings", (r) => (r.created_at = "2099-01-01T00:00:00.000Z")],
    ["a swapped model hash", "model_file", (r) => (r.model.sha256 = "0".repeat(64))],
    [
      "wrong tensor types",
      "kernels_match_model",
      (r) => (r.model.tensor_types = { F16: 1, F32: 9, TQ2_0: 14 }),
    ],
  ];
  it.each(tampered)("fail on %s (gate %s)", async (_what, gate, edit) => {
    const r = receipt();
    edit(r);
    const report = await verify(r, { modelPath });
    expect(report.ok).toBe(false);
    expect(failed(report)).toContain(gate);
  });

  it("checks each backend against its own rules: fused projections, no kernel path", async () => {
    // A GPU-like backend that runs q/k/v as one fused projection and gate/up as another.
    const fused: KernelRules = {
      ...CPU_LIKE,
      backends: ["gpu"],
      idPrefix: "gpu.",
      kernelPaths: null,
      calls: { ...CPU_LIKE.calls, linearPerLayer: { "bitnet-b1.58": 4 } },
    };
    const gpuReceipt = (): RunReceipt => {
      const r = receipt();
      r.backend.name = "gpu";
      r.backend.kernel_path = null;
      for (const k of r.backend.kernels) {
        k.id = k.id.replace("cpu.avx512vnni.", "gpu.");
        if (k.id.includes(".linear.")) {
          k.calls = (k.calls / 7) * 4;
        }
      }
      return r;
    };
    expect(failed(await verify(gpuReceipt(), { kernelRules: fused }))).toEqual([]);
    // The CPU rules reject it (foreign ids), and the GPU rules reject 7 projections a layer.
    expect(failed(await verify(gpuReceipt()))).toEqual([
      "kernels",
      "kernels_match_model",
      "kernel_calls",
    ]);
    const seven = gpuReceipt();
    seven.backend.kernels.find((k) => k.id.includes(".linear."))!.calls *= 7 / 4;
    expect(failed(await verify(seven, { kernelRules: fused }))).toEqual(["kernel_calls"]);
  });

  it("fails the kernel gates when no rules are known for the receipt's backend", async () => {
    const report = await verifyReceipt(receipt());
    expect(failed(report)).toEqual(["kernels", "kernels_match_model", "kernel_calls"]);
    expect(report.gates.find((g) => g.gate === "kernels")!.detail).toContain(
      'no kernel rules for backend "cpu"',
    );
  });

  it("replays and requires identical tokens", async () => {
    const ok = await verify(receipt(), { replay: async (r) => r.generated_tokens });
    expect(ok.gates.find((g) => g.gate === "replay")!.status).toBe("pass");
    const bad = await verify(receipt(), {
      replay: async (r) => [...r.generated_tokens.slice(0, 4), 1, 2, 3, 4],
    });
    expect(failed(bad)).toEqual(["replay"]);
    expect(bad.gates.find((g) => g.gate === "replay")!.detail).toContain("token 4 differs");
  });

  it("never throws on arbitrary or mutated JSON: the schema gate fails instead", async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue(), async (value) => {
        const report = await verify(value);
        expect(report.ok).toBe(false);
        expect(failed(report)).toEqual(["schema"]);
      }),
      { numRuns: 200 },
    );
    const base = JSON.stringify(receipt());
    await fc.assert(
      fc.asyncProperty(fc.nat(base.length - 1), fc.string({ maxLength: 3 }), async (at, text) => {
        let value: unknown;
        try {
          value = JSON.parse(base.slice(0, at) + text + base.slice(at + 1));
        } catch {
          return; // not JSON any more: the CLI reports that before verifying
        }
        const report = await verify(value);
        expect(report.gates).toHaveLength(9);
      }),
      { numRuns: 300 },
    );
  });
});

describe("the published JSON Schema", () => {
  const file = path.resolve(
    import.meta.dirname,
    `../schema/receipt-${RECEIPT_SCHEMA_VERSION}.schema.json`,
  );

  it("is the one the zod schema generates (run `pnpm --filter @bitnet-ts/receipts schema` after changing it)", () => {
    expect(JSON.parse(fs.readFileSync(file, "utf8"))).toEqual(receiptJsonSchema());
  });

  it("accepts receipts and rejects broken ones in an independent validator (ajv)", () => {
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats.default(ajv);
    const validate = ajv.compile(JSON.parse(fs.readFileSync(file, "utf8")));
    expect(validate(JSON.parse(JSON.stringify(receipt()))), JSON.stringify(validate.errors)).toBe(
      true,
    );
    expect(validate({ ...receipt(), kind: "other" })).toBe(false);
    expect(validate({ ...receipt(), prompt_tokens: [-1] })).toBe(false);
  });
});
