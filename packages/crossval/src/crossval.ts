/**
 * Cross-validation against llama.cpp on the same GGUF file.
 *
 * For each prompt, llama.cpp generates greedily; that sequence is then fed to every engine
 * (teacher forcing) and the next-token distributions are compared at every position. llama.cpp
 * is also compared with itself (batched vs token-by-token evaluation): the floor nobody beats.
 * Each engine of ours also decodes greedily on its own, and its tokens are compared with
 * llama.cpp's.
 */
import {
  type BackendName,
  type CompiledModel,
  loadModel,
  readModelDescription,
} from "@bitnet-ts/engine-core";
import { evaluateLogits } from "@bitnet-ts/generation";
import { Tokenizer } from "@bitnet-ts/tokenizers";
import { LlamaRunsMismatchError } from "./errors";
import { openLlamaReference } from "./llama";
import {
  argmaxOf,
  comparePosition,
  type PositionMetrics,
  type Summary,
  summarize,
} from "./metrics";

export interface CrossvalOptions {
  /** Greedy tokens llama.cpp generates per prompt (default 32). */
  readonly nTokens?: number;
  /** Our backends to compare (default ["reference", "reference-f64"]: the engine and the yardstick). */
  readonly backends?: readonly BackendName[];
  readonly threads?: number;
  readonly onProgress?: (message: string) => void;
  /**
   * llama.cpp's runs on this file and these prompts, from {@link runLlama}: comparing several of
   * our backends in separate calls then runs llama.cpp once. Without it each call runs it.
   */
  readonly llama?: LlamaRuns;
}

/** llama.cpp on one prompt: its greedy continuation and its logits for prompt + continuation. */
export interface LlamaRun {
  readonly prompt: readonly number[];
  readonly continuation: readonly number[];
  /** Logits at every position, evaluated token by token (its greedy decode). */
  readonly sequential: Float32Array;
  /** Logits at every position, evaluated as one batch. */
  readonly batched: Float32Array;
}

/** llama.cpp's side of a cross-validation, reusable across {@link crossvalidate} calls. */
export interface LlamaRuns {
  readonly model: string;
  readonly prompts: readonly string[];
  readonly nTokens: number;
  readonly vocabSize: number;
  readonly runs: readonly LlamaRun[];
}

export interface LlamaRunOptions {
  /** Greedy tokens per prompt (default 32). */
  readonly nTokens?: number;
  readonly threads?: number;
  readonly onProgress?: (message: string) => void;
}

/**
 * Runs llama.cpp on each prompt (tokenized with the file's own tokenizer): a greedy continuation
 * of `nTokens`, and the logits of the whole sequence token by token and batched.
 */
export async function runLlama(
  modelPath: string,
  prompts: readonly string[],
  options: LlamaRunOptions = {},
): Promise<LlamaRuns> {
  const n = options.nTokens ?? 32;
  const log = options.onProgress ?? (() => {});
  const description = await readModelDescription(modelPath, { tensorData: false });
  const tokenizer = Tokenizer.fromGguf(description.file.metadata);
  const vocabSize = description.hparams.vocabSize;
  const promptIds = prompts.map((p) => tokenizer.encode(p));
  const longest = Math.max(...promptIds.map((p) => p.length)) + n;
  const llama = await openLlamaReference(modelPath, {
    contextSize: Math.max(64, longest + 8),
    vocabSize,
    ...(options.threads === undefined ? {} : { threads: options.threads }),
  });
  const runs: LlamaRun[] = [];
  try {
    for (const [i, prompt] of promptIds.entries()) {
      log(`prompt ${i + 1}/${prompts.length}: llama.cpp greedy`);
      // llama.cpp's greedy decode is also its token-by-token evaluation of the final sequence.
      const { tokens: continuation, logits: sequential } = await llama.greedy(prompt, n);
      const batched = await llama.logits([...prompt, ...continuation], "batch");
      runs.push({ prompt, continuation, sequential, batched });
    }
  } finally {
    await llama.dispose();
  }
  return { model: modelPath, prompts: [...prompts], nTokens: n, vocabSize, runs };
}

export interface EngineReport {
  readonly engine: string;
  readonly summary: Summary;
  /** Per prompt: how many of our own greedy tokens match llama.cpp's before the first difference. */
  readonly greedyMatched: readonly number[];
  /** Prompts whose first min(8, nTokens) greedy tokens are identical to llama.cpp's. */
  readonly first8Identical: number;
}

export interface CrossvalReport {
  readonly model: string;
  readonly prompts: readonly string[];
  readonly nTokens: number;
  /** llama.cpp batched vs token-by-token: the floor. */
  readonly llamaSelf: Summary;
  readonly engines: readonly EngineReport[];
}

export async function crossvalidate(
  modelPath: string,
  prompts: readonly string[],
  options: CrossvalOptions = {},
): Promise<CrossvalReport> {
  const n = options.nTokens ?? 32;
  const backends = options.backends ?? ["reference", "reference-f64"];
  const log = options.onProgress ?? (() => {});
  const llama =
    options.llama ??
    (await runLlama(modelPath, prompts, {
      nTokens: n,
      onProgress: log,
      ...(options.threads === undefined ? {} : { threads: options.threads }),
    }));
  const mismatch =
    llama.model !== modelPath
      ? `they are of ${llama.model}, not ${modelPath}`
      : llama.nTokens !== n
        ? `they generated ${llama.nTokens} tokens per prompt, not ${n}`
        : llama.prompts.length !== prompts.length || llama.prompts.some((p, i) => p !== prompts[i])
          ? "their prompts differ"
          : null;
  if (mismatch !== null) {
    throw new LlamaRunsMismatchError(mismatch);
  }
  const models = new Map<string, CompiledModel>();
  for (const b of backends) {
    models.set(
      b,
      await loadModel(modelPath, {
        backend: b,
        ...(options.threads === undefined
          ? {}
          : { backendOptions: { cpu: { threads: options.threads } } }),
      }),
    );
  }
  const vocab = llama.vocabSize;
  const selfMetrics: PositionMetrics[] = [];
  const perEngine = new Map<string, { metrics: PositionMetrics[]; matched: number[] }>(
    backends.map((b) => [b, { metrics: [], matched: [] }]),
  );
  try {
    for (const [i, { prompt, continuation, sequential, batched }] of llama.runs.entries()) {
      const sequence = [...prompt, ...continuation];
      // Positions whose logits predict a token of the sequence: all but the last.
      const scored = sequence.length - 1;
      for (let p = 0; p < scored; p++) {
        selfMetrics.push(comparePosition(batched, p * vocab, sequential, p * vocab, vocab));
      }
      for (const [name, model] of models) {
        log(`prompt ${i + 1}/${prompts.length}: ${name}`);
        const ours = await evaluateLogits(model, sequence);
        const entry = perEngine.get(name)!;
        for (let p = 0; p < scored; p++) {
          entry.metrics.push(comparePosition(batched, p * vocab, ours, p * vocab, vocab));
        }
        // Our backends are batch-invariant (contract-tested): decoding one token at a time gives
        // exactly these logits, so greedy agreement can be read off the teacher-forced rows.
        entry.matched.push(matchedPrefix(ours, vocab, prompt.length, continuation));
      }
    }
  } finally {
    for (const m of models.values()) {
      await m.dispose();
    }
  }
  return {
    model: modelPath,
    prompts,
    nTokens: n,
    llamaSelf: summarize(selfMetrics),
    engines: backends.map((b) => {
      const e = perEngine.get(b)!;
      return {
        engine:
          b === "reference"
            ? "bitnet-ts reference (ggml numerics)"
            : b === "reference-f64"
              ? "bitnet-ts reference f64 (yardstick)"
              : `bitnet-ts ${b}`,
        summary: summarize(e.metrics),
        greedyMatched: e.matched,
        first8Identical: e.matched.filter((m) => m >= Math.min(8, n)).length,
      };
    }),
  };
}

/** How many of `reference` our greedy decode reproduces before the first difference. */
function matchedPrefix(
  logits: Float32Array,
  vocab: number,
  promptLength: number,
  reference: readonly number[],
): number {
  for (let i = 0; i < reference.length; i++) {
    if (argmaxOf(logits, (promptLength - 1 + i) * vocab, vocab) !== reference[i]) {
      return i;
    }
  }
  return reference.length;
}

/** The report as an aligned text table. */
export function formatReport(r: CrossvalReport): string {
  const rows: string[][] = [
    [
      "engine vs llama.cpp",
      "positions",
      "top-1 agree",
      "mean KL",
      "max KL",
      "mean max|Δlogp| top10",
      "min cos",
      `greedy first-${Math.min(8, r.nTokens)} identical`,
    ],
    [
      "llama.cpp batched vs token-by-token (floor)",
      String(r.llamaSelf.positions),
      pct(r.llamaSelf.top1Agreement),
      sci(r.llamaSelf.meanKl),
      sci(r.llamaSelf.maxKl),
      sci(r.llamaSelf.meanMaxDeltaLogProbTop10),
      r.llamaSelf.minCosine.toFixed(6),
      "-",
    ],
    ...r.engines.map((e) => [
      e.engine,
      String(e.summary.positions),
      pct(e.summary.top1Agreement),
      sci(e.summary.meanKl),
      sci(e.summary.maxKl),
      sci(e.summary.meanMaxDeltaLogProbTop10),
      e.summary.minCosine.toFixed(6),
      `${e.first8Identical}/${r.prompts.length}`,
    ]),
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  const line = (row: string[]) =>
    `| ${row.map((cell, c) => cell.padEnd(widths[c]!)).join(" | ")} |`;
  return [
    `cross-validation: ${r.model}, ${r.prompts.length} prompts × ${r.nTokens} greedy tokens (teacher-forced on llama.cpp's continuation)`,
    line(rows[0]!),
    `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`,
    ...rows.slice(1).map(line),
  ].join("\n");
}

function pct(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

function sci(x: number): string {
  return x === 0 ? "0" : x < 1e-3 ? x.toExponential(2) : x.toFixed(4);
}
