/**
 * The engine against PyTorch on a trained model: `bitnet_train.evaluate` writes what the
 * trainer's float32 quantized forward computed (golden.json, logits.f16); this module runs the
 * same token windows, documents and held-out text through a bitnet-ts backend and measures the
 * distance: tokenization identical document by document, top-1 agreement and KL per position,
 * and llama-perplexity on the held-out text.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { comparePosition, type Summary, summarize } from "@bitnet-ts/crossval";
import { type BackendName, loadModel, registerBackend } from "@bitnet-ts/engine-core";
import { evaluateLogits, perplexity } from "@bitnet-ts/generation";
import { decodeF16, decodeF32 } from "@bitnet-ts/quantization";
import { Tokenizer } from "@bitnet-ts/tokenizers";

// The CPU backend is this package's dependency: engine-core resolves backend packages through
// whoever registers them.
registerBackend("cpu", () => import("@bitnet-ts/kernels-cpu"));

/** golden.json as bitnet_train.evaluate writes it. */
export interface Golden {
  readonly text: string;
  readonly ctx: number;
  readonly chunks: number;
  readonly scored_tokens: number;
  readonly perplexity: number;
  readonly vocab_size: number;
  /** The logits file: logits.f32 or logits.f16. */
  readonly logits: string;
  readonly windows: readonly (readonly number[])[];
  readonly tokenized: readonly { readonly text: string; readonly ids: readonly number[] }[];
}

export interface GoldenData {
  readonly golden: Golden;
  /** PyTorch's logits of every window position, [positions, vocab]. */
  readonly logits: Float32Array;
  /** The held-out text the perplexity was measured on. */
  readonly textPath: string;
}

export class GoldenDataError extends Error {
  override readonly name = "GoldenDataError";
}

export function readGolden(dir: string): GoldenData {
  const jsonPath = path.join(dir, "golden.json");
  if (!fs.existsSync(jsonPath)) {
    throw new GoldenDataError(`no golden data in ${dir}: golden.json is missing`);
  }
  const golden = JSON.parse(fs.readFileSync(jsonPath, "utf8")) as Golden;
  const f16 = golden.logits.endsWith(".f16");
  const raw = fs.readFileSync(path.join(dir, golden.logits));
  const positions = golden.windows.reduce((n, w) => n + w.length, 0);
  const width = f16 ? 2 : 4;
  if (raw.byteLength !== positions * golden.vocab_size * width) {
    throw new GoldenDataError(
      `${golden.logits} has ${raw.byteLength} bytes; ${positions} positions × ${golden.vocab_size} × ${width} were expected`,
    );
  }
  const bytes = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
  return {
    golden,
    logits: f16 ? decodeF16(bytes) : decodeF32(bytes),
    textPath: path.join(dir, golden.text),
  };
}

export interface PytorchComparison {
  readonly backend: string;
  /** Documents whose token ids equal SentencePiece's, and how many were compared. */
  readonly tokenizedIdentical: number;
  readonly tokenizedTotal: number;
  /** The first document tokenized differently, if any. */
  readonly firstTokenizerMismatch?: { text: string; expected: number[]; actual: number[] };
  /** Logits per position against PyTorch's (reference = PyTorch). */
  readonly logits: Summary;
  readonly enginePerplexity: number;
  readonly pytorchPerplexity: number;
  /** |engine − PyTorch| / PyTorch. */
  readonly perplexityRelativeDifference: number;
}

export interface CompareOptions {
  readonly backend?: BackendName;
  readonly threads?: number;
}

export async function compareWithPytorch(
  modelPath: string,
  data: GoldenData,
  options: CompareOptions = {},
): Promise<PytorchComparison> {
  const backend = options.backend ?? "cpu";
  const model = await loadModel(modelPath, {
    backend,
    ...(options.threads === undefined
      ? {}
      : { backendOptions: { cpu: { threads: options.threads } } }),
  });
  try {
    const { golden, logits: expected } = data;
    const vocab = model.description.hparams.vocabSize;
    if (vocab !== golden.vocab_size) {
      throw new GoldenDataError(
        `${modelPath} has a vocabulary of ${vocab}; the golden data was made with ${golden.vocab_size}`,
      );
    }
    const tokenizer = Tokenizer.fromGguf(model.description.file.metadata);
    let identical = 0;
    let firstMismatch: PytorchComparison["firstTokenizerMismatch"];
    for (const doc of golden.tokenized) {
      const ids = tokenizer.encode(doc.text, { addBos: false });
      if (ids.length === doc.ids.length && ids.every((id, i) => id === doc.ids[i])) {
        identical++;
      } else {
        firstMismatch ??= { text: doc.text, expected: [...doc.ids], actual: ids };
      }
    }
    const metrics = [];
    let row = 0;
    for (const window of golden.windows) {
      const ours = await evaluateLogits(model, window);
      for (let p = 0; p < window.length; p++, row++) {
        metrics.push(comparePosition(expected, row * vocab, ours, p * vocab, vocab));
      }
    }
    const text = fs.readFileSync(data.textPath, "utf8");
    const ppl = await perplexity(model, tokenizer.encode(text), {
      contextLength: golden.ctx,
      bos: tokenizer.vocab.bos,
      maxChunks: golden.chunks,
    });
    return {
      backend: model.backendName,
      tokenizedIdentical: identical,
      tokenizedTotal: golden.tokenized.length,
      ...(firstMismatch === undefined ? {} : { firstTokenizerMismatch: firstMismatch }),
      logits: summarize(metrics),
      enginePerplexity: ppl.ppl,
      pytorchPerplexity: golden.perplexity,
      perplexityRelativeDifference: Math.abs(ppl.ppl - golden.perplexity) / golden.perplexity,
    };
  } finally {
    await model.dispose();
  }
}

/** The comparisons as an aligned text table, one row per backend. */
export function formatComparison(rows: readonly PytorchComparison[]): string {
  const header = [
    "backend",
    "tokenized =",
    "top-1",
    "mean KL",
    "max KL",
    "PPL engine",
    "PPL PyTorch",
    "Δ PPL",
  ];
  const body = rows.map((r) => [
    r.backend,
    `${r.tokenizedIdentical}/${r.tokenizedTotal}`,
    `${(100 * r.logits.top1Agreement).toFixed(2)}%`,
    r.logits.meanKl.toExponential(2),
    r.logits.maxKl.toExponential(2),
    r.enginePerplexity.toFixed(4),
    r.pytorchPerplexity.toFixed(4),
    `${(100 * r.perplexityRelativeDifference).toFixed(3)}%`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ")} |`;
  return [
    line(header),
    `| ${widths.map((w, i) => (i === 0 ? "-".repeat(w) : `${"-".repeat(w - 1)}:`)).join(" | ")} |`,
    ...body.map(line),
  ].join("\n");
}
