/**
 * Run receipts from the CLI: what `bitnet run --receipt` and `bitnet bench --receipt` write,
 * and the replay `bitnet verify-receipt --replay` performs.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { probeDevice } from "@bitnet-ts/device-probe";
import type { CompiledModel } from "@bitnet-ts/engine-core";
import { TextGenerator } from "@bitnet-ts/generation";
import { DEFAULT_SAMPLING, type SamplingSettings } from "@bitnet-ts/logits";
import {
  type BackendSection,
  type DeviceSection,
  type ModelSection,
  RECEIPT_SCHEMA_VERSION,
  type RunReceipt,
  sha256File,
} from "@bitnet-ts/receipts";
import { writeFileAtomic } from "./output-file";

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function toolVersion(): string {
  try {
    return (
      JSON.parse(fs.readFileSync(path.join(packageRoot, "package.json"), "utf8")) as {
        version: string;
      }
    ).version;
  } catch {
    return "unknown";
  }
}

/** The git commit of the checkout the CLI runs from, when it runs from one. */
function gitCommit(): string | null {
  try {
    const out = execFileSync("git", ["rev-parse", "HEAD"], {
      cwd: packageRoot,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 2000,
    });
    return /^[0-9a-f]{40}$/.test(out.trim()) ? out.trim() : null;
  } catch {
    return null;
  }
}

export function deviceSection(): DeviceSection {
  const d = probeDevice();
  return {
    cpu_model: d.cpu.model,
    cpu_vendor: d.cpu.vendor,
    features: Object.entries(d.cpu.features)
      .filter(([, on]) => on)
      .map(([name]) => name),
    physical_cores: d.cpu.physicalCores,
    logical_cores: d.cpu.logicalCores,
    memory_bytes: d.memory.totalBytes,
    os: `${d.platform} ${d.osRelease}`,
    arch: d.cpu.arch,
    node: d.node,
  };
}

export async function modelSection(
  model: CompiledModel,
  modelPath: string,
  onLine: (line: string) => void,
): Promise<ModelSection> {
  const file = model.description.file;
  const types: Record<string, number> = {};
  for (const t of file.tensors) {
    types[t.type.name] = (types[t.type.name] ?? 0) + 1;
  }
  onLine(`hashing ${path.basename(modelPath)} for the receipt`);
  return {
    path: path.resolve(modelPath),
    size_bytes: fs.statSync(modelPath).size,
    sha256: await sha256File(modelPath),
    architecture: String(file.metadata.get("general.architecture")?.value),
    tensor_types: types,
    n_layer: model.description.hparams.nLayer,
    vocab_size: model.description.hparams.vocabSize,
    params: file.tensors.reduce((n, t) => n + t.elementCount, 0),
  };
}

/** The backend as it ran: name, kernel path and threads from the backend itself, kernels as counted. */
export function backendSection(
  model: CompiledModel,
  options: Record<string, unknown>,
  threads: number | undefined,
): BackendSection {
  const info =
    "info" in model
      ? (model as unknown as { info(): { kernelPath: string; threads: number } }).info()
      : undefined;
  const opts: Record<string, boolean | number | string> = {};
  if (options["mmap"] === false) {
    opts["mmap"] = false;
  }
  if (options["head"] === "q8_0" || options["head"] === "q6_k") {
    opts[`head_${options["head"]}`] = true;
  }
  if (options["tq1"] === "direct") {
    opts["tq1_direct"] = true;
  }
  if (typeof options["ffnActivation"] === "string") {
    opts["ffn_act"] = options["ffnActivation"];
  }
  return {
    name: model.backendName,
    kernel_path: info?.kernelPath ?? null,
    threads: info?.threads ?? threads ?? 1,
    options: opts,
    kernels: [...model.kernelCounts()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([id, calls]) => ({ id, calls })),
  };
}

/** Every sampler setting in effect (llama.cpp defaults filled in) and the seed actually used. */
export function samplingSection(
  settings: SamplingSettings,
  seed: number,
  generation: { maxTokens: number; ignoreEos: boolean; stop: readonly string[] },
): NonNullable<RunReceipt["sampling"]> {
  const s = { ...DEFAULT_SAMPLING, ...settings };
  return {
    temperature: s.temperature,
    top_k: s.topK,
    top_p: s.topP,
    min_p: s.minP,
    typical_p: s.typicalP,
    repeat_penalty: s.repeatPenalty,
    repeat_last_n: s.repeatLastN,
    presence_penalty: s.presencePenalty,
    frequency_penalty: s.frequencyPenalty,
    seed,
    max_tokens: generation.maxTokens,
    ignore_eos: generation.ignoreEos,
    stop: [...generation.stop],
  };
}

export function receiptHeader(): Pick<
  RunReceipt,
  "schema_version" | "tool" | "created_at" | "compute_path" | "device"
> {
  return {
    schema_version: RECEIPT_SCHEMA_VERSION,
    tool: { name: "bitnet-ts", version: toolVersion(), git_commit: gitCommit() },
    created_at: new Date().toISOString(),
    compute_path: "real",
    device: deviceSection(),
  };
}

/** Writes the receipt atomically (a temp file renamed into place). */
export function writeReceipt(file: string, receipt: RunReceipt): void {
  writeFileAtomic(file, `${JSON.stringify(receipt, null, 2)}\n`, "--receipt");
}

/** Re-runs a run receipt's generation with its model, backend, threads, sampling and prompt ids. */
export async function replayReceipt(receipt: RunReceipt, modelPath: string): Promise<number[]> {
  const s = receipt.sampling!;
  const backend = receipt.backend.name;
  const generator = await TextGenerator.load(modelPath, {
    backend,
    contextLength: receipt.context_length,
    ...(typeof receipt.backend.options["ffn_act"] === "string"
      ? { ffnActivation: receipt.backend.options["ffn_act"] as "relu2" | "silu" }
      : {}),
    // The receipt's backend gets back the options it ran with.
    backendOptions: {
      [backend]: {
        threads: receipt.backend.threads,
        ...(receipt.backend.kernel_path === null
          ? {}
          : { kernelPath: receipt.backend.kernel_path }),
        ...(receipt.backend.options["mmap"] === false ? { mmap: false } : {}),
        ...(receipt.backend.options["head_q8_0"] === true ? { head: "q8_0" as const } : {}),
        ...(receipt.backend.options["head_q6_k"] === true ? { head: "q6_k" as const } : {}),
        ...(receipt.backend.options["tq1_direct"] === true ? { tq1: "direct" as const } : {}),
      },
    },
  });
  try {
    const generation = generator.generate(receipt.prompt_tokens, {
      temperature: s.temperature,
      topK: s.top_k,
      topP: s.top_p,
      minP: s.min_p,
      typicalP: s.typical_p,
      repeatPenalty: s.repeat_penalty,
      repeatLastN: s.repeat_last_n,
      presencePenalty: s.presence_penalty,
      frequencyPenalty: s.frequency_penalty,
      seed: s.seed,
      maxTokens: s.max_tokens,
      ignoreEos: s.ignore_eos,
      stop: s.stop,
    });
    return [...(await generation.result).tokens];
  } finally {
    await generator.dispose();
  }
}
