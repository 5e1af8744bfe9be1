/**
 * The gates a receipt must pass. Each gate has a stable name, passes, fails with a reason, or is
 * skipped (with why): a tampered receipt fails a named gate, never silently.
 */
import * as fs from "node:fs";
import { readGgufFile } from "@bitnet-ts/gguf";
import { sha256File } from "./hash";
import type { KernelRules } from "./rules";
import { RunReceipt } from "./schema";

export type GateName =
  | "schema"
  | "compute_path"
  | "kernels"
  | "kernels_match_model"
  | "kernel_calls"
  | "tokens"
  | "timings"
  | "model_file"
  | "replay";

export interface GateResult {
  readonly gate: GateName;
  readonly status: "pass" | "fail" | "skip";
  readonly detail: string;
}

export interface VerifyReport {
  /** True when no gate failed. */
  readonly ok: boolean;
  readonly gates: readonly GateResult[];
  /** The parsed receipt, when it passed the schema gate. */
  readonly receipt?: RunReceipt;
}

export interface VerifyOptions {
  /** The model file to check the receipt's hash, size and tensor types against. */
  readonly modelPath?: string;
  /**
   * Re-runs the receipt's generation (same model, backend, threads, sampling, seed and prompt
   * tokens) and returns the generated ids; the gate requires them identical.
   */
  readonly replay?: (receipt: RunReceipt) => Promise<readonly number[]>;
  /**
   * The kernel-count rules of the receipt's backend (its package's `kernelRules`; engine-core's
   * `kernelRulesFor(name)` finds them). Without them the kernel gates fail: a receipt from a
   * backend whose rules are unknown cannot be checked.
   */
  readonly kernelRules?: KernelRules;
  /** Receives a line while the model is hashed or replayed. */
  readonly onProgress?: (line: string) => void;
}

function pass(gate: GateName, detail: string): GateResult {
  return { gate, status: "pass", detail };
}
function fail(gate: GateName, detail: string): GateResult {
  return { gate, status: "fail", detail };
}
function skip(gate: GateName, detail: string): GateResult {
  return { gate, status: "skip", detail };
}

function close(a: number, b: number, relative: number): boolean {
  return Math.abs(a - b) <= relative * Math.max(Math.abs(a), Math.abs(b), 1e-9);
}

function sumWhere(r: RunReceipt, test: (id: string) => boolean): number {
  return r.backend.kernels.filter((k) => test(k.id)).reduce((n, k) => n + k.calls, 0);
}

function kernelsGate(r: RunReceipt, rules: KernelRules): GateResult {
  const { kernels, name, kernel_path: path } = r.backend;
  if (kernels.length === 0) {
    return fail("kernels", "no kernel ids: the backend reported nothing executed");
  }
  const zero = kernels.find((k) => k.calls === 0);
  if (zero !== undefined) {
    return fail("kernels", `kernel ${zero.id} is listed with 0 calls`);
  }
  const ids = new Set<string>();
  for (const k of kernels) {
    if (ids.has(k.id)) {
      return fail("kernels", `kernel ${k.id} is listed twice`);
    }
    ids.add(k.id);
  }
  const foreign = kernels.find((k) => !k.id.startsWith(rules.idPrefix));
  if (foreign !== undefined) {
    return fail(
      "kernels",
      `kernel ${foreign.id} does not belong to the ${name} backend (ids start with "${rules.idPrefix}")`,
    );
  }
  if (rules.kernelPaths !== null) {
    const paths = Object.keys(rules.kernelPaths);
    const allowed = path === null ? undefined : rules.kernelPaths[path];
    if (allowed === undefined) {
      return fail(
        "kernels",
        `the ${name} backend must name its kernel path (one of ${paths.join(", ")}), got ${path}`,
      );
    }
    const stray = kernels.find((k) => !allowed.includes(k.id.split(".")[rules.pathSegment] ?? ""));
    if (stray !== undefined) {
      return fail("kernels", `kernel ${stray.id} is not on the "${path}" path the receipt names`);
    }
  }
  return pass(
    "kernels",
    `${kernels.length} kernel ids, ${kernels.reduce((n, k) => n + k.calls, 0)} calls`,
  );
}

function kernelsMatchModelGate(r: RunReceipt, rules: KernelRules): GateResult {
  const types = Object.keys(r.model.tensor_types);
  const ternary = types.filter((t) => t in rules.ternaryTags);
  const ids = r.backend.kernels.map((k) => k.id);
  for (const t of ternary) {
    if (!rules.ternaryTags[t]!.some((tag) => ids.some((id) => id.includes(tag)))) {
      return fail(
        "kernels_match_model",
        `the model has ${t} weights but no ${t} projection kernel ran`,
      );
    }
  }
  for (const [t, tags] of Object.entries(rules.ternaryTags)) {
    const id = ids.find((i) => tags.some((tag) => i.includes(tag)));
    if (id !== undefined && !types.includes(t)) {
      return fail(
        "kernels_match_model",
        `kernel ${id} runs ${t} weights, which the model does not have`,
      );
    }
  }
  const outputs = ids.filter((i) => i.includes(rules.outputTag));
  if (outputs.length === 0) {
    return fail("kernels_match_model", "no output-head kernel ran");
  }
  const optionalHeads = Object.entries(rules.headOptions)
    .filter(([option]) => r.backend.options[option] === true)
    .map(([, type]) => type);
  for (const id of outputs) {
    const type = id
      .slice(id.indexOf(rules.outputTag) + rules.outputTag.length)
      .split(".")[0]!
      .toUpperCase();
    if (!types.includes(type) && !optionalHeads.includes(type)) {
      return fail(
        "kernels_match_model",
        `output kernel ${id} reads ${type}, which no tensor of the model has`,
      );
    }
  }
  return pass(
    "kernels_match_model",
    `projections: ${ternary.join(", ") || "none ternary"}; head: ${outputs.join(", ")}`,
  );
}

function kernelGates(r: RunReceipt, rules: KernelRules | undefined): GateResult[] {
  const names = ["kernels", "kernels_match_model", "kernel_calls"] as const;
  if (rules === undefined) {
    return names.map((g) =>
      fail(g, `no kernel rules for backend "${r.backend.name}" (is its package installed?)`),
    );
  }
  if (!rules.backends.includes(r.backend.name)) {
    return names.map((g) =>
      fail(
        g,
        `the kernel rules given are for ${rules.backends.join(", ")}, not "${r.backend.name}"`,
      ),
    );
  }
  return [kernelsGate(r, rules), kernelsMatchModelGate(r, rules), kernelCallsGate(r, rules)];
}

function kernelCallsGate(r: RunReceipt, rules: KernelRules): GateResult {
  const { calls } = rules;
  const perLayer = calls.linearPerLayer[r.model.architecture];
  if (perLayer === undefined) {
    return skip("kernel_calls", `no call-count rule for architecture ${r.model.architecture}`);
  }
  const steps = sumWhere(r, (id) => id.includes(calls.embedTag));
  if (steps < 1) {
    return fail("kernel_calls", "no embedding lookups: no forward step ran");
  }
  const linear = sumWhere(r, (id) => id.includes(calls.linearTag));
  const attention = sumWhere(r, (id) => id.includes(calls.attentionTag));
  const layers = r.model.n_layer;
  const attentionPerStep = layers * calls.attentionPerLayer;
  if (linear !== perLayer * layers * steps) {
    return fail(
      "kernel_calls",
      `${linear} projection calls, but ${steps} steps × ${layers} layers × ${perLayer} projections = ${perLayer * layers * steps}`,
    );
  }
  if (attention !== attentionPerStep * steps) {
    return fail(
      "kernel_calls",
      `${attention} attention calls, but ${steps} steps × ${attentionPerStep} per step = ${attentionPerStep * steps}`,
    );
  }
  if (r.kind === "run") {
    const tokens = r.prompt_tokens.length + r.generated_tokens.length;
    if (steps > tokens) {
      return fail("kernel_calls", `${steps} forward steps for ${tokens} tokens`);
    }
    if (steps < r.generated_tokens.length) {
      return fail(
        "kernel_calls",
        `${steps} forward steps cannot generate ${r.generated_tokens.length} tokens`,
      );
    }
  }
  return pass(
    "kernel_calls",
    `${steps} steps: ${linear} projection and ${attention} attention calls agree with ${layers} layers`,
  );
}

function tokensGate(r: RunReceipt): GateResult {
  if (r.kind === "bench") {
    const tg = r.bench?.results.filter((t) => t.test.startsWith("tg")) ?? [];
    if (r.bench === null || r.bench.results.some((t) => t.samples.length !== t.reps)) {
      return fail("tokens", "bench results must list one sample per repetition");
    }
    return pass(
      "tokens",
      `${r.bench.results.length} bench results (${tg.length} generation tests)`,
    );
  }
  if (r.sampling === null || r.finish_reason === null) {
    return fail("tokens", "a run receipt needs its sampling settings and finish reason");
  }
  if (r.prompt_tokens.length === 0) {
    return fail("tokens", "the prompt has no tokens");
  }
  const vocab = r.model.vocab_size;
  const bad = [...r.prompt_tokens, ...r.generated_tokens].find((t) => t >= vocab);
  if (bad !== undefined) {
    return fail("tokens", `token id ${bad} is outside the vocabulary (0..${vocab - 1})`);
  }
  const max = r.sampling.max_tokens;
  if (max >= 0 && r.generated_tokens.length > max) {
    return fail(
      "tokens",
      `${r.generated_tokens.length} tokens generated, more than max_tokens ${max}`,
    );
  }
  if (r.finish_reason === "length" && max >= 0 && r.generated_tokens.length !== max) {
    return fail(
      "tokens",
      `finish_reason "length" with ${r.generated_tokens.length} of ${max} tokens`,
    );
  }
  if (r.prompt_tokens.length + r.generated_tokens.length > r.context_length) {
    return fail(
      "tokens",
      `${r.prompt_tokens.length + r.generated_tokens.length} tokens exceed the context length ${r.context_length}`,
    );
  }
  return pass(
    "tokens",
    `${r.prompt_tokens.length} prompt + ${r.generated_tokens.length} generated tokens, all in the vocabulary`,
  );
}

function timingsGate(r: RunReceipt): GateResult {
  const t = r.timings;
  const created = Date.parse(r.created_at);
  if (created > Date.now() + 5 * 60_000) {
    return fail("timings", `created_at ${r.created_at} is in the future`);
  }
  if (r.kind === "run") {
    const prefill = t.prefill_ms > 0 ? (r.prompt_tokens.length * 1000) / t.prefill_ms : 0;
    if (!close(prefill, t.prefill_tokens_per_second, 0.01)) {
      return fail(
        "timings",
        `prefill: ${r.prompt_tokens.length} tokens in ${t.prefill_ms} ms is ${prefill.toFixed(2)} t/s, receipt says ${t.prefill_tokens_per_second}`,
      );
    }
    const decoded = r.generated_tokens.length - 1;
    const decode = t.decode_ms > 0 && decoded > 0 ? (decoded * 1000) / t.decode_ms : 0;
    if (!close(decode, t.decode_tokens_per_second, 0.01)) {
      return fail(
        "timings",
        `decode: ${decoded} tokens in ${t.decode_ms} ms is ${decode.toFixed(2)} t/s, receipt says ${t.decode_tokens_per_second}`,
      );
    }
    if (r.generated_tokens.length > 0 && t.prefill_ms === 0) {
      return fail("timings", "tokens were generated with no prefill time");
    }
  } else {
    for (const test of r.bench?.results ?? []) {
      const mean = test.samples.reduce((a, b) => a + b, 0) / test.samples.length;
      if (!close(mean, test.tps_mean, 0.01)) {
        return fail(
          "timings",
          `${test.engine} ${test.test}: the samples average ${mean.toFixed(2)} t/s, receipt says ${test.tps_mean}`,
        );
      }
    }
  }
  return pass(
    "timings",
    `load ${t.load_ms.toFixed(0)} ms, prefill ${t.prefill_tokens_per_second.toFixed(1)} t/s, decode ${t.decode_tokens_per_second.toFixed(1)} t/s`,
  );
}

async function modelFileGate(
  r: RunReceipt,
  modelPath: string,
  onProgress?: (line: string) => void,
): Promise<GateResult> {
  if (!fs.existsSync(modelPath)) {
    return fail("model_file", `${modelPath} does not exist`);
  }
  const size = fs.statSync(modelPath).size;
  if (size !== r.model.size_bytes) {
    return fail("model_file", `the file has ${size} bytes, the receipt ${r.model.size_bytes}`);
  }
  onProgress?.(`hashing ${modelPath}`);
  const sha = await sha256File(modelPath);
  if (sha !== r.model.sha256) {
    return fail("model_file", `sha256 ${sha} differs from the receipt's ${r.model.sha256}`);
  }
  const file = await readGgufFile(modelPath);
  const arch = file.metadata.get("general.architecture")?.value;
  if (arch !== r.model.architecture) {
    return fail(
      "model_file",
      `the file's architecture is ${String(arch)}, the receipt says ${r.model.architecture}`,
    );
  }
  const types: Record<string, number> = {};
  for (const t of file.tensors) {
    types[t.type.name] = (types[t.type.name] ?? 0) + 1;
  }
  const want = JSON.stringify(Object.entries(types).sort());
  const got = JSON.stringify(Object.entries(r.model.tensor_types).sort());
  if (want !== got) {
    return fail("model_file", `tensor types ${got} differ from the file's ${want}`);
  }
  return pass("model_file", `sha256 ${sha.slice(0, 16)}…, ${size} bytes, tensor types match`);
}

/** Runs every gate on a parsed JSON value (a receipt, or anything claiming to be one). */
export async function verifyReceipt(
  input: unknown,
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  const parsed = RunReceipt.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length > 0 ? issue.path.join(".") : "(root)";
    const gates: GateResult[] = [
      fail(
        "schema",
        `${where}: ${issue.message}${parsed.error.issues.length > 1 ? ` (+${parsed.error.issues.length - 1} more)` : ""}`,
      ),
      ...(
        [
          "compute_path",
          "kernels",
          "kernels_match_model",
          "kernel_calls",
          "tokens",
          "timings",
          "model_file",
          "replay",
        ] as const
      ).map((g) => skip(g, "the receipt is not valid against the schema")),
    ];
    return { ok: false, gates };
  }
  const r = parsed.data;
  const gates: GateResult[] = [pass("schema", `receipt ${r.schema_version}, kind ${r.kind}`)];
  gates.push(
    r.compute_path === "real"
      ? pass("compute_path", "real")
      : fail("compute_path", `"${r.compute_path}"`),
  );
  gates.push(...kernelGates(r, options.kernelRules), tokensGate(r), timingsGate(r));
  gates.push(
    options.modelPath === undefined
      ? skip("model_file", "no --model given")
      : await modelFileGate(r, options.modelPath, options.onProgress),
  );
  if (options.replay === undefined) {
    gates.push(skip("replay", "no --replay asked"));
  } else if (r.kind !== "run") {
    gates.push(skip("replay", "bench receipts record speeds, not a generation to replay"));
  } else if (gates.some((g) => g.status === "fail")) {
    gates.push(skip("replay", "an earlier gate failed"));
  } else {
    options.onProgress?.("replaying the generation");
    const again = await options.replay(r);
    const first = again.findIndex((t, i) => t !== r.generated_tokens[i]);
    gates.push(
      again.length === r.generated_tokens.length && first < 0
        ? pass("replay", `${again.length} tokens reproduced exactly`)
        : fail(
            "replay",
            first >= 0
              ? `token ${first} differs: replay ${again[first]}, receipt ${r.generated_tokens[first]}`
              : `replay generated ${again.length} tokens, the receipt ${r.generated_tokens.length}`,
          ),
    );
  }
  return { ok: gates.every((g) => g.status !== "fail"), gates, receipt: r };
}
