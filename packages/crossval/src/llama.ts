/**
 * llama.cpp through node-llama-cpp (an optional dependency, loaded dynamically): greedy
 * generation and the full logits of every position, batched or token by token.
 */
import { ReferenceUnavailableError } from "./errors";

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

/** llama.cpp on the CPU, from node-llama-cpp's prebuilt binaries (never built from source here). */
export async function openLlamaCpu(): Promise<{
  nlc: NodeLlamaCpp;
  llama: Awaited<ReturnType<NodeLlamaCpp["getLlama"]>>;
}> {
  const nlc = await loadNodeLlamaCpp();
  try {
    const llama = await nlc.getLlama({
      build: "never",
      gpu: false,
      logLevel: nlc.LlamaLogLevel.error,
      progressLogs: false,
    });
    return { nlc, llama };
  } catch (error) {
    throw new ReferenceUnavailableError(
      `node-llama-cpp has no usable prebuilt binary here (${(error as Error).message})`,
      { cause: error },
    );
  }
}

export async function openLlamaReference(
  modelPath: string,
  options: { contextSize: number; vocabSize: number; threads?: number },
): Promise<LlamaReference> {
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
