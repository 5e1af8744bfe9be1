/**
 * The run receipt, v1.0.0: one zod schema is the source of the TypeScript types, the runtime
 * validation and the published JSON Schema (schema/receipt-1.0.0.schema.json, regenerated and
 * compared in a test so it never drifts). Field names are snake_case, as in llama.cpp's JSON.
 */
import { z } from "zod";

export const RECEIPT_SCHEMA_VERSION = "1.0.0";

const count = z.number().int().nonnegative();
const finite = z.number().refine(Number.isFinite, "must be a finite number");
const nonNegative = finite.refine((x) => x >= 0, "must be ≥ 0");
const tokenId = z.number().int().nonnegative();

export const ModelSection = z
  .object({
    path: z.string().min(1),
    size_bytes: count,
    sha256: z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex digits"),
    architecture: z.string().min(1),
    /** Tensor count per ggml type, e.g. {"I2_S": 210, "F32": 121, "F16": 1}. */
    tensor_types: z.record(z.string(), count),
    n_layer: count,
    vocab_size: count.min(1),
    params: count,
  })
  .strict();

export const KernelCall = z.object({ id: z.string().min(1), calls: count }).strict();

export const BackendSection = z
  .object({
    /** The backend that ran: "cpu", "reference", "reference-f64", "cuda", "metal". */
    name: z.string().min(1),
    /** The SIMD path of a native backend ("amx", "avx512vnni", "avxvnni", "avx2", "scalar"), else null. */
    kernel_path: z.string().nullable(),
    threads: count.min(1),
    /** Backend options in effect (e.g. mmap, head_q8_0). */
    options: z.record(z.string(), z.union([z.boolean(), z.number(), z.string()])),
    /** Kernel ids executed and how often, as the backend counted them during the run. */
    kernels: z.array(KernelCall),
  })
  .strict();

export const SamplingSection = z
  .object({
    temperature: finite,
    top_k: z.number().int(),
    top_p: finite,
    min_p: finite,
    typical_p: finite,
    repeat_penalty: finite,
    repeat_last_n: z.number().int(),
    presence_penalty: finite,
    frequency_penalty: finite,
    seed: z.number().int().min(0).max(0xffffffff),
    max_tokens: z.number().int(),
    ignore_eos: z.boolean(),
    stop: z.array(z.string()),
  })
  .strict();

export const TimingsSection = z
  .object({
    load_ms: nonNegative,
    prefill_ms: nonNegative,
    decode_ms: nonNegative,
    prefill_tokens_per_second: nonNegative,
    decode_tokens_per_second: nonNegative,
  })
  .strict();

export const BenchTest = z
  .object({
    engine: z.string().min(1),
    test: z.string().regex(/^(pp|tg)\d+$/),
    tps_mean: nonNegative,
    tps_std: nonNegative,
    tps_median: nonNegative,
    reps: count.min(1),
    samples: z.array(nonNegative).min(1),
  })
  .strict();

export const BenchSection = z
  .object({
    results: z.array(BenchTest).min(1),
    bound: z
      .object({
        bandwidth_gbs: nonNegative,
        memory: z.string(),
        bytes_per_token: nonNegative,
        tg_tps: nonNegative,
      })
      .strict()
      .nullable(),
  })
  .strict();

export const DeviceSection = z
  .object({
    cpu_model: z.string(),
    cpu_vendor: z.string(),
    features: z.array(z.string()),
    physical_cores: count,
    logical_cores: count,
    memory_bytes: count,
    os: z.string(),
    arch: z.string(),
    node: z.string(),
  })
  .strict();

export const RunReceipt = z
  .object({
    schema_version: z.literal(RECEIPT_SCHEMA_VERSION),
    /** "run": one generation (`bitnet run`); "bench": `bitnet bench` tests. */
    kind: z.enum(["run", "bench"]),
    tool: z
      .object({
        name: z.literal("bitnet-ts"),
        version: z.string(),
        git_commit: z.string().nullable(),
      })
      .strict(),
    created_at: z.iso.datetime({ offset: true }),
    /** Always "real": produced by a run of the engine, never by a mock or a replay of logits. */
    compute_path: z.literal("real"),
    model: ModelSection,
    backend: BackendSection,
    device: DeviceSection,
    context_length: count.min(1),
    sampling: SamplingSection.nullable(),
    prompt_tokens: z.array(tokenId),
    generated_tokens: z.array(tokenId),
    finish_reason: z.enum(["stop", "length", "abort", "context"]).nullable(),
    timings: TimingsSection,
    bench: BenchSection.nullable(),
  })
  .strict();

export type RunReceipt = z.infer<typeof RunReceipt>;
export type ModelSection = z.infer<typeof ModelSection>;
export type BackendSection = z.infer<typeof BackendSection>;
export type SamplingSection = z.infer<typeof SamplingSection>;
export type TimingsSection = z.infer<typeof TimingsSection>;
export type DeviceSection = z.infer<typeof DeviceSection>;
export type BenchSection = z.infer<typeof BenchSection>;

/** The JSON Schema (draft 2020-12) of a v1.0.0 receipt. */
export function receiptJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(RunReceipt, { target: "draft-2020-12", io: "input" }),
    $id: `https://bitnet-ts.dev/schema/receipt-${RECEIPT_SCHEMA_VERSION}.schema.json`,
    title: `bitnet-ts run receipt ${RECEIPT_SCHEMA_VERSION}`,
  };
}
