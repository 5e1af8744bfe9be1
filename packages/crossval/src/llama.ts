/**
 * llama.cpp through node-llama-cpp (an optional dependency, loaded dynamically): greedy
 * generation and the full logits of every position, batched or token by token.
 */

import * as fs from "node:fs";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import {
  LlamaCpuVariantMismatchError,
  LlamaCpuVariantUnsupportedError,
  ReferenceUnavailableError,
} from "./errors";
import { assertLlamaCanLoad } from "./llama-loadable";
import {
  assertLlamaCpuVariantRunnable,
  GGML_X86_CPU_VARIANTS,
  isaFeaturesOf,
  type LlamaVariantCopy,
  mappedLlamaCpuVariants,
  prepareLlamaVariantCopy,
  variantFromSystemInfo,
} from "./llama-variant";

type NodeLlamaCpp = typeof import("node-llama-cpp");

export interface LlamaReference {
  readonly vocabSize: number;
  /**
   * Greedy decoding as llama.cpp does it: the prompt, then one token per call. Returns the
   * continuation and the logits of every position, evaluated token by token.
   */
  greedy(prompt: readonly number[], n: number): Promise<{ tokens: number[]; logits: Float32Array }>;
  /** Logits of every position, evaluated as one batch ("batch") or one token per call ("sequential"). */
  logits(tokens: readonly number[], mode: "batch" | "sequential"): Promise<Float32Array>;
  /** Logits of positions from `from` on, the whole sequence evaluated as one batch from an empty cache. */
  logitsFrom(tokens: readonly number[], from: number): Promise<Float32Array>;
  /** Tokenization by llama.cpp itself (no BOS). */
  tokenize(text: string): number[];
  dispose(): Promise<void>;
}

export async function loadNodeLlamaCpp(): Promise<NodeLlamaCpp> {
  try {
    return (await import("node-llama-cpp")) as NodeLlamaCpp;
  } catch (error) {
    throw new ReferenceUnavailableError("the node-llama-cpp package is not installed", {
      cause: error,
    });
  }
}

/** The llama.cpp CPU backend a node-llama-cpp instance runs. */
export interface LlamaCpuBackend {
  /**
   * The ggml CPU variant that runs (the `ggml-cpu-<variant>` library: "haswell", "zen4", …), or
   * null where it cannot be told (e.g. a local build without per-CPU libraries).
   */
  readonly variant: string | null;
  /** The variant that was forced, or null when ggml picked the best one this CPU runs. */
  readonly requested: string | null;
  /** Instruction-set features llama.cpp reports for its CPU backend ("AVX2", "AVX512_VNNI", …). */
  readonly features: readonly string[];
  /** The variant's library file, where the OS tells (Linux); null elsewhere. */
  readonly library: string | null;
}

export interface OpenLlamaCpuOptions {
  /**
   * Run only this ggml CPU variant ("x64", "haswell", "cascadelake", "sapphirerapids", …: see
   * GGML_X86_CPU_VARIANTS; `llamaCpuVariantFor(kernelPath)` gives the one matching a kernel path
   * of ours). Default: ggml picks the best variant this CPU runs.
   */
  readonly cpuVariant?: string;
  /**
   * Where the private node-llama-cpp copies that force a variant live (default: a folder in the
   * OS temporary directory). Hard links where it is on the same file system as node_modules.
   */
  readonly variantCacheDir?: string;
}

/** Which ggml CPU variant a loaded llama.cpp runs, from its system info and this process's mappings. */
export function identifyLlamaCpuBackend(
  systemInfo: string,
  requested: string | null,
  mapped: readonly { variant: string; path: string }[] | null = mappedLlamaCpuVariants(),
): LlamaCpuBackend {
  const single = mapped?.length === 1 ? mapped[0] : undefined;
  return {
    variant: single?.variant ?? variantFromSystemInfo(systemInfo) ?? null,
    requested,
    features: isaFeaturesOf(systemInfo),
    library: single?.path ?? null,
  };
}

/**
 * Why a llama.cpp that was asked to run only `requested` (from the private copy in `binsDir`)
 * does not, or undefined when both signals agree that it does: the one `ggml-cpu-*` library the
 * process has mapped is that variant, from that folder (`mapped`; null where the OS does not
 * tell, e.g. no /proc/self/maps), and the
 * features llama.cpp reports are exactly the ones that variant is built with.
 */
export function llamaCpuVariantMismatch(
  requested: string,
  binsDir: string,
  systemInfo: string,
  mapped: readonly { variant: string; path: string }[] | null = mappedLlamaCpuVariants(),
): { loaded: string | null; detail: string } | undefined {
  const fromFeatures = variantFromSystemInfo(systemInfo) ?? null;
  if (mapped !== null) {
    const real = (p: string): string => {
      try {
        return fs.realpathSync(p);
      } catch {
        return p;
      }
    };
    const ours = mapped.filter(
      (m) => m.variant === requested && real(path.dirname(m.path)) === real(binsDir),
    );
    if (mapped.length !== 1 || ours.length !== 1) {
      const list = mapped.map((m) => m.path).join(", ") || "none";
      return {
        loaded: mapped.length === 1 ? mapped[0]!.variant : fromFeatures,
        detail: `the process has ${mapped.length === 1 ? "this" : `${mapped.length}`} ggml CPU ${mapped.length === 1 ? "library" : "libraries"} mapped: ${list}, expected only ${path.join(binsDir, `*ggml-cpu-${requested}.*`)}${mapped.length > 0 && ours.length === 0 ? " (a llama.cpp loaded earlier in this process shares its libraries with later ones: force the variant in a fresh process)" : ""}`,
      };
    }
  }
  if (fromFeatures !== requested) {
    const features = isaFeaturesOf(systemInfo);
    return {
      loaded: fromFeatures,
      detail: `llama.cpp reports the CPU features [${features.join(", ")}]${fromFeatures === null ? ", which match no ggml variant" : `, which are ggml's ${fromFeatures} build`}; ${requested} is built with [${[...(GGML_X86_CPU_VARIANTS[requested] ?? [])].join(", ")}] (system info: ${systemInfo.trim()})`,
    };
  }
  return undefined;
}

/**
 * llama.cpp on the CPU, from node-llama-cpp's prebuilt binaries (never built from source here).
 * With `cpuVariant`, only that ggml CPU variant can load (from a private copy of node-llama-cpp
 * whose binaries folder holds no other), and what loaded is checked: the CPU must have the
 * variant's features (else LlamaCpuVariantUnsupportedError) and the variant that runs must be
 * that one (else LlamaCpuVariantMismatchError). Without it ggml picks the best variant; `cpu`
 * says which either way.
 */
export async function openLlamaCpu(options: OpenLlamaCpuOptions = {}): Promise<{
  nlc: NodeLlamaCpp;
  llama: Awaited<ReturnType<NodeLlamaCpp["getLlama"]>>;
  cpu: LlamaCpuBackend;
}> {
  const requested = options.cpuVariant ?? null;
  let copy: LlamaVariantCopy | undefined;
  let nlc: NodeLlamaCpp;
  if (requested === null) {
    nlc = await loadNodeLlamaCpp();
  } else {
    assertLlamaCpuVariantRunnable(requested);
    copy = prepareLlamaVariantCopy(requested, options.variantCacheDir);
    try {
      nlc = (await import(pathToFileURL(copy.entry).href)) as NodeLlamaCpp;
    } catch (error) {
      throw new ReferenceUnavailableError(
        `could not import the ${requested}-only copy of node-llama-cpp at ${copy.packageDir} (${(error as Error).message})`,
        { cause: error },
      );
    }
  }
  let llama: Awaited<ReturnType<NodeLlamaCpp["getLlama"]>>;
  try {
    llama = await nlc.getLlama({
      build: "never",
      gpu: false,
      logLevel: nlc.LlamaLogLevel.error,
      progressLogs: false,
    });
  } catch (error) {
    if (copy !== undefined && requested !== null) {
      throw new LlamaCpuVariantUnsupportedError(
        requested,
        `node-llama-cpp could not load the binaries in ${copy.binsDir}, which offer ggml no other CPU variant (${(error as Error).message}); ggml loads none when the CPU or the OS lacks a feature the variant is built with`,
        { cause: error },
      );
    }
    throw new ReferenceUnavailableError(
      `node-llama-cpp has no usable prebuilt binary here (${(error as Error).message})`,
      { cause: error },
    );
  }
  const systemInfo = llama.systemInfo;
  if (copy !== undefined && requested !== null) {
    const mismatch = llamaCpuVariantMismatch(requested, copy.binsDir, systemInfo);
    if (mismatch !== undefined) {
      await llama.dispose();
      throw new LlamaCpuVariantMismatchError(requested, mismatch.loaded, mismatch.detail);
    }
  }
  return { nlc, llama, cpu: identifyLlamaCpuBackend(systemInfo, requested) };
}

export async function openLlamaReference(
  modelPath: string,
  options: { contextSize: number; vocabSize: number; threads?: number },
): Promise<LlamaReference> {
  assertLlamaCanLoad(modelPath);
  const { llama } = await openLlamaCpu();
  const model = await llama.loadModel({ modelPath });
  const context = await model.createContext({
    contextSize: options.contextSize,
    batchSize: options.contextSize,
    // The standard (non-flash) attention path, whose f16 rounding points our reference backend mirrors.
    flashAttention: false,
    threads: options.threads ?? 2,
    sequences: 1,
  });
  const sequence = context.getSequence();
  const vocabSize = options.vocabSize;
  const toArray = (map: ReadonlyMap<number, number> | undefined): Float32Array => {
    const row = new Float32Array(vocabSize);
    for (const [token, value] of map ?? []) {
      row[token] = value;
    }
    return row;
  };
  return {
    vocabSize,
    async greedy(prompt, n) {
      await sequence.clearHistory();
      const out: number[] = [];
      const rows = new Float32Array((prompt.length + n) * vocabSize);
      let position = 0;
      const evaluate = async (token: number): Promise<Float32Array> => {
        const results = await sequence.controlledEvaluate([
          [token, { generateNext: { logits: true } }],
        ] as never);
        const row: Float32Array = toArray(results[0]?.next.logits);
        rows.set(row, position * vocabSize);
        position++;
        return row;
      };
      let last: Float32Array = new Float32Array(0);
      for (const token of prompt) {
        last = await evaluate(token);
      }
      for (let i = 0; i < n; i++) {
        let best = 0;
        for (let t = 1; t < last.length; t++) {
          if (last[t]! > last[best]!) {
            best = t;
          }
        }
        out.push(best);
        if (i + 1 < n) {
          last = await evaluate(best);
        }
      }
      return { tokens: out, logits: rows };
    },
    async logits(tokens, mode) {
      await sequence.clearHistory();
      const rows = new Float32Array(tokens.length * vocabSize);
      if (mode === "batch") {
        const results = await sequence.controlledEvaluate(
          tokens.map((t) => [t, { generateNext: { logits: true } }]) as never,
        );
        for (const [i, r] of results.entries()) {
          rows.set(toArray(r?.next.logits), i * vocabSize);
        }
      } else {
        for (let i = 0; i < tokens.length; i++) {
          const results = await sequence.controlledEvaluate([
            [tokens[i]!, { generateNext: { logits: true } }],
          ] as never);
          rows.set(toArray(results[0]?.next.logits), i * vocabSize);
        }
      }
      return rows;
    },
    async logitsFrom(tokens, from) {
      await sequence.clearHistory();
      const items = tokens.map((t, i) => (i >= from ? [t, { generateNext: { logits: true } }] : t));
      const results = await sequence.controlledEvaluate(items as never);
      const rows = new Float32Array((tokens.length - from) * vocabSize);
      for (let i = from; i < tokens.length; i++) {
        rows.set(toArray(results[i]?.next.logits), (i - from) * vocabSize);
      }
      return rows;
    },
    tokenize(text) {
      return Array.from(model.tokenize(text, false));
    },
    async dispose() {
      await context.dispose();
      await model.dispose();
      await llama.dispose();
    },
  };
}
