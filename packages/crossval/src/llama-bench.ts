/**
 * llama.cpp's speed on a model, measured through node-llama-cpp the way llama-bench measures
 * it: pp = one batch of N prompt tokens from an empty cache, tg = N single-token decode steps
 * from an empty cache, or both after a depth of D tokens already in the context (llama-bench's
 * --n-depth). Used by `bitnet bench --compare-llama` to put both engines in one table.
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
  /**
   * Fills the context the tests start from with `tokens` (evaluated in batches, untimed); []
   * empties it.
   */
  setDepth(tokens: readonly number[]): Promise<void>;
  /** Milliseconds to evaluate `tokens` as one batch after the depth; the context is erased back to it after. */
  prefill(tokens: readonly number[]): Promise<number>;
  /** Milliseconds to evaluate `tokens` one per step after the depth; the context is erased back to it after. */
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
  const batch = Math.max(1, Math.min(512, options.batchSize ?? contextSize));
  // Tokens the tests start from; each test's own are erased after it.
  let depth = 0;
  const rewind = async (): Promise<void> => {
    if (depth === 0) {
      await sequence.clearHistory();
    } else if (sequence.nextTokenIndex > depth) {
      await sequence.eraseContextTokenRanges([{ start: depth, end: sequence.nextTokenIndex }]);
    }
  };
  return {
    label: `llama.cpp (node-llama-cpp ${nodeLlamaCppVersion()}, CPU${cpu.variant === null ? "" : ` ${cpu.variant}`})`,
    cpu,
    async setDepth(tokens) {
      await sequence.clearHistory();
      depth = 0;
      for (let i = 0; i < tokens.length; i += batch) {
        await sequence.controlledEvaluate(tokens.slice(i, i + batch) as never);
      }
      depth = tokens.length;
    },
    async prefill(tokens) {
      await rewind();
      const items = tokens.map((t, i) => (i === tokens.length - 1 ? [t, next] : t));
      const started = performance.now();
      await sequence.controlledEvaluate(items as never);
      const ms = performance.now() - started;
      await rewind();
      return ms;
    },
    async decode(tokens) {
      await rewind();
      const started = performance.now();
      for (const t of tokens) {
        await sequence.controlledEvaluate([[t, next]] as never);
      }
      const ms = performance.now() - started;
      await rewind();
      return ms;
    },
    async dispose() {
      await context.dispose();
      await model.dispose();
      await llama.dispose();
    },
  };
}
