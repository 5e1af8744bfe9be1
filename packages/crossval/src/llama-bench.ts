/**
 * llama.cpp's speed on a model, measured through node-llama-cpp the way llama-bench measures
 * it: pp = one batch of N prompt tokens from an empty cache, tg = N single-token decode steps
 * from an empty cache. Used by `bitnet bench --compare-llama` to put both engines in one table.
 */

import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import { type LlamaCpuBackend, openLlamaCpu } from "./llama";
import { assertLlamaCanLoad } from "./llama-loadable";

export interface LlamaBenchOptions {
  readonly threads: number;
  /** Context to allocate: at least the longest test (default 512). */
  readonly contextSize?: number;
  /** Largest prompt batch (default: the context size). */
  readonly batchSize?: number;
  /** Map the file (default true), as `bitnet bench` does unless --no-mmap. */
  readonly useMmap?: boolean;
  /**
   * Run only this ggml CPU variant (e.g. "haswell"; `llamaCpuVariantFor("avx2")`), checked after
   * loading. Default: the best variant this CPU runs.
   */
  readonly cpuVariant?: string;
  /** Where the private node-llama-cpp copies that force a variant live (default: in os.tmpdir()). */
  readonly variantCacheDir?: string;
}

export interface LlamaBenchSession {
  /** e.g. "llama.cpp (node-llama-cpp 3.22.1, CPU haswell)" ("CPU" alone when the variant is unknown). */
  readonly label: string;
  /** The ggml CPU variant that runs, and the one that was forced. */
  readonly cpu: LlamaCpuBackend;
  /** Milliseconds to evaluate `tokens` as one batch from an empty cache. */
  prefill(tokens: readonly number[]): Promise<number>;
  /** Milliseconds to evaluate `tokens` one per step from an empty cache. */
  decode(tokens: readonly number[]): Promise<number>;
  dispose(): Promise<void>;
}

/** The installed node-llama-cpp version (its package.json is not exported: found next to its entry). */
function nodeLlamaCppVersion(): string {
  try {
    let dir = path.dirname(createRequire(import.meta.url).resolve("node-llama-cpp"));
    for (let i = 0; i < 5; i++, dir = path.dirname(dir)) {
      const file = path.join(dir, "package.json");
      if (fs.existsSync(file)) {
        const pkg = JSON.parse(fs.readFileSync(file, "utf8")) as {
          name?: string;
          version?: string;
        };
        if (pkg.name === "node-llama-cpp") {
          return pkg.version ?? "unknown version";
        }
      }
    }
  } catch {
    // fall through
  }
  return "unknown version";
}

export async function openLlamaBench(
  modelPath: string,
  options: LlamaBenchOptions,
): Promise<LlamaBenchSession> {
  assertLlamaCanLoad(modelPath);
  const { llama, cpu } = await openLlamaCpu({
    ...(options.cpuVariant === undefined ? {} : { cpuVariant: options.cpuVariant }),
    ...(options.variantCacheDir === undefined ? {} : { variantCacheDir: options.variantCacheDir }),
  });
  const model = await llama.loadModel({ modelPath, useMmap: options.useMmap ?? true });
  const contextSize = options.contextSize ?? 512;
  const context = await model.createContext({
    contextSize,
    batchSize: options.batchSize ?? contextSize,
    threads: options.threads,
    sequences: 1,
    flashAttention: false,
  });
  const sequence = context.getSequence();
  const next = { generateNext: { token: true } } as const;
  return {
    label: `llama.cpp (node-llama-cpp ${nodeLlamaCppVersion()}, CPU${cpu.variant === null ? "" : ` ${cpu.variant}`})`,
    cpu,
    async prefill(tokens) {
      await sequence.clearHistory();
      const items = tokens.map((t, i) => (i === tokens.length - 1 ? [t, next] : t));
      const started = performance.now();
      await sequence.controlledEvaluate(items as never);
      return performance.now() - started;
    },
    async decode(tokens) {
      await sequence.clearHistory();
      const started = performance.now();
      for (const t of tokens) {
        await sequence.controlledEvaluate([[t, next]] as never);
      }
      return performance.now() - started;
    },
    async dispose() {
      await context.dispose();
      await model.dispose();
      await llama.dispose();
    },
  };
}
