/** Shared option parsing for the generation commands (llama.cpp flag names). */
import type { BackendName, BackendOptions, FfnActivation } from "@bitnet-ts/engine-core";
import { KERNEL_PATHS } from "@bitnet-ts/kernels-cpu/kernel-paths";
import type { SamplingSettings } from "@bitnet-ts/logits";
import { type Command, InvalidArgumentError } from "commander";
import { CliInputError } from "./errors";

export function integer(
  name: string,
  min: number,
  max: number = Number.MAX_SAFE_INTEGER,
): (value: string) => number {
  return (value: string): number => {
    if (!/^-?\d+$/.test(value.trim())) {
      throw new InvalidArgumentError(`${name} must be an integer.`);
    }
    const n = Number(value);
    if (n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be from ${min} to ${max}.`);
    }
    return n;
  };
}

/** A comma-separated list of integers (llama-bench's `-p 128,512`). */
export function integerList(
  name: string,
  min: number,
  max: number = Number.MAX_SAFE_INTEGER,
): (value: string) => number[] {
  const one = integer(name, min, max);
  return (value: string): number[] => value.split(",").map((v) => one(v));
}

/** A byte count: a plain integer or one with a binary suffix (512M, 1G, 64k; K/M/G/T = 2^10…2^40). */
export function byteSize(name: string): (value: string) => number {
  const scale: Record<string, number> = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };
  return (value: string): number => {
    const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(value.trim());
    const bytes = match === null ? Number.NaN : Number(match[1]) * scale[match[2]!.toLowerCase()]!;
    if (!Number.isSafeInteger(Math.floor(bytes))) {
      throw new InvalidArgumentError(`${name} must be a byte count such as 268435456, 512M or 2G.`);
    }
    return Math.floor(bytes);
  };
}

export function number(name: string, min: number, max: number): (value: string) => number {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be a number from ${min} to ${max}.`);
    }
    return n;
  };
}

export function choice<T extends string>(
  name: string,
  choices: readonly T[],
): (value: string) => T {
  return (value: string): T => {
    if (!(choices as readonly string[]).includes(value)) {
      throw new InvalidArgumentError(`${name} must be one of ${choices.join(", ")}.`);
    }
    return value as T;
  };
}

export interface ModelOptions {
  model?: string;
  ctxSize?: number;
  threads?: number;
  backend?: BackendName;
  ffnAct?: FfnActivation;
  /** false with --no-mmap (Commander's negated flag). */
  mmap?: boolean;
  /** --head q8_0|q6_k. */
  head?: HeadQuantization;
  /** --head-q8_0, the older spelling of --head q8_0. */
  headQ8_0?: boolean;
  /** --tq1 repack|direct. */
  tq1?: "repack" | "direct";
  kernelPath?: string;
}

/** Output-head types the CPU backend can requantize to at load (--head). */
export const HEAD_TYPES = ["q8_0", "q6_k"] as const;
export type HeadQuantization = (typeof HEAD_TYPES)[number];

/** The head type asked for by --head or --head-q8_0 (undefined: the file's head). */
export function headOf(options: ModelOptions): HeadQuantization | undefined {
  return options.head ?? (options.headQ8_0 === true ? "q8_0" : undefined);
}

/** The CPU backend's flags as given (what receipts record; threads are recorded separately). */
export function cpuFlagsOf(options: ModelOptions): Record<string, unknown> {
  return {
    ...(options.mmap === false ? { mmap: false } : {}),
    ...(headOf(options) === undefined ? {} : { head: headOf(options) }),
    ...(options.tq1 === undefined ? {} : { tq1: options.tq1 }),
    ...(options.kernelPath === undefined ? {} : { kernelPath: options.kernelPath }),
  };
}

/** The flags only the CPU backend reads, as the user spelled them. */
function cpuOnlyFlags(options: ModelOptions): string[] {
  return [
    ...(options.kernelPath === undefined ? [] : [`--kernel-path ${options.kernelPath}`]),
    ...(options.head === undefined ? [] : [`--head ${options.head}`]),
    ...(options.headQ8_0 === true ? ["--head-q8_0"] : []),
    ...(options.tq1 === undefined ? [] : [`--tq1 ${options.tq1}`]),
  ];
}

/**
 * The backend to ask for. The CPU backend's own flags (--kernel-path, --head, --tq1) choose it
 * under `auto`, so that a forced kernel path this CPU cannot run is an error rather than a quiet
 * fall-back to the slow reference backend; with any other backend, which would ignore them, they
 * are refused. Two spellings of the head that disagree are refused too.
 */
export function backendOf(options: ModelOptions): BackendName | undefined {
  if (options.head !== undefined && options.headQ8_0 === true && options.head !== "q8_0") {
    throw new CliInputError(
      `could not choose the head - --head ${options.head} and --head-q8_0 disagree; give one.`,
    );
  }
  const cpuOnly = cpuOnlyFlags(options);
  if (cpuOnly.length === 0) {
    return options.backend;
  }
  if (options.backend === undefined || options.backend === "auto" || options.backend === "cpu") {
    return "cpu";
  }
  throw new CliInputError(
    `could not use ${cpuOnly.join(" and ")} with --backend ${options.backend} - only the CPU backend reads ${cpuOnly.length > 1 ? "them" : "it"}; drop ${cpuOnly.length > 1 ? "them" : "it"} or use --backend cpu.`,
  );
}

/** `{ backend }` for loadModel's options, as backendOf chooses it (nothing under plain auto). */
export function backendField(options: ModelOptions): { backend?: BackendName } {
  const backend = backendOf(options);
  return backend === undefined ? {} : { backend };
}

/** Options per backend from the command line: --threads, --no-mmap, … belong to the CPU backend. */
export function backendOptionsOf(options: ModelOptions): BackendOptions {
  return {
    cpu: {
      ...cpuFlagsOf(options),
      ...(options.threads === undefined ? {} : { threads: options.threads }),
    },
    // --backend metal is WebGPU on Dawn's Metal adapter.
    ...(options.backend === "metal" ? { webgpu: { backendType: "metal" } } : {}),
  };
}

export interface SamplingOptions {
  temp?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  typical?: number;
  repeatPenalty?: number;
  repeatLastN?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  seed?: number;
}

export function addModelOptions(cmd: Command, modelOptional: boolean): Command {
  return cmd
    .option(
      "-m, --model <model.gguf>",
      modelOptional ? "GGUF model (default: the built-in synthetic demo model)" : "GGUF model",
    )
    .option("-c, --ctx-size <n>", "context length (default: the model's)", integer("--ctx-size", 1))
    .option("-t, --threads <n>", "threads for native backends", integer("--threads", 1, 1024))
    .option(
      "--backend <name>",
      "auto, cpu, webgpu (metal: WebGPU on Metal), cuda, reference or reference-f64 (default auto)",
      choice("--backend", [
        "auto",
        "cuda",
        "webgpu",
        "metal",
        "cpu",
        "reference",
        "reference-f64",
      ] as const),
    )
    .option(
      "--ffn-act <act>",
      "override the FFN activation: relu2 or silu (a 2B-4T checkpoint converted by mainline llama.cpp lands in arch bitnet but needs relu2)",
      choice("--ffn-act", ["relu2", "silu"] as const),
    )
    .option(
      "--no-mmap",
      "read the weights into (huge-page) memory instead of mapping the file: faster decode where 4 KiB page mappings slow streaming, more private memory",
    )
    .option(
      "--head <type>",
      "run the output head as q8_0 or q6_k (CPU backend; requantized at load): faster decode, logits differ slightly from the file's head (bench measures by how much)",
      choice("--head", HEAD_TYPES),
    )
    .option("--head-q8_0", "the same as --head q8_0")
    .option(
      "--tq1 <mode>",
      "TQ1_0 weights on the CPU backend: repack (default: decoded to 2-bit TQ2_0 at load, the fastest decode on few cores) or direct (the file's 1.69 bits in place: less memory and a faster load, slower decode where cores are few)",
      choice("--tq1", ["repack", "direct"] as const),
    )
    .option(
      "--kernel-path <path>",
      `force a CPU kernel path: ${KERNEL_PATHS.join(", ")} (default: the best this CPU has)`,
      choice("--kernel-path", KERNEL_PATHS),
    );
}

/** Speculative decoding: `--draft lookup|draft.gguf`, `--draft-max N`. */
export function addDraftOptions(cmd: Command): Command {
  return cmd
    .option(
      "--draft <lookup|draft.gguf>",
      "speculative decoding: draft with prompt lookup (n-grams of the context; fast on grounded tasks) or a small model with the same vocabulary; the output stays the model's",
    )
    .option(
      "--draft-max <n>",
      "most tokens drafted per step (default 8 for lookup, 6 for a draft model)",
      integer("--draft-max", 1, 64),
    );
}

export function addSamplingOptions(cmd: Command): Command {
  return cmd
    .option("--temp <t>", "temperature; ≤ 0 is greedy (default 0.8)", number("--temp", -1e9, 1e9))
    .option("--top-k <k>", "top-k; ≤ 0 keeps all (default 40)", integer("--top-k", -1e9, 1e9))
    .option("--top-p <p>", "top-p; 1 disables (default 0.95)", number("--top-p", 0, 1))
    .option("--min-p <p>", "min-p; 0 disables (default 0.05)", number("--min-p", 0, 1))
    .option(
      "--typical <p>",
      "locally typical sampling; 1 disables (default 1)",
      number("--typical", 0, 1),
    )
    .option(
      "--repeat-penalty <x>",
      "repetition penalty; 1 disables (default 1)",
      number("--repeat-penalty", 1e-9, 1e9),
    )
    .option(
      "--repeat-last-n <n>",
      "tokens the penalties look back over; -1 = context (default 64)",
      integer("--repeat-last-n", -1),
    )
    .option(
      "--presence-penalty <x>",
      "presence penalty (default 0)",
      number("--presence-penalty", -1e9, 1e9),
    )
    .option(
      "--frequency-penalty <x>",
      "frequency penalty (default 0)",
      number("--frequency-penalty", -1e9, 1e9),
    )
    .option(
      "-s, --seed <n>",
      "RNG seed; -1 = random (default -1)",
      integer("--seed", -1, 0xffffffff),
    );
}

export function samplingSettings(o: SamplingOptions): SamplingSettings {
  const s: Record<string, number> = {};
  const set = (key: keyof SamplingSettings, v: number | undefined): void => {
    if (v !== undefined) {
      s[key] = v;
    }
  };
  set("temperature", o.temp);
  set("topK", o.topK);
  set("topP", o.topP);
  set("minP", o.minP);
  set("typicalP", o.typical);
  set("repeatPenalty", o.repeatPenalty);
  set("repeatLastN", o.repeatLastN);
  set("presencePenalty", o.presencePenalty);
  set("frequencyPenalty", o.frequencyPenalty);
  set("seed", o.seed);
  return s as SamplingSettings;
}
