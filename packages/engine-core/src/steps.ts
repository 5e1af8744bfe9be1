/**
 * The step plumbing every backend shares: flattening runs into one token batch, splitting the
 * logits rows back per run, the logits reductions (argmax, top-k) for backends that reduce on
 * the host, and a queue that runs steps one at a time, each caller getting its own outcome.
 */
import type { LogitsReduction, RunLogits, SequenceRun, TopLogits } from "./backend";
import { EngineError, EngineErrorCode } from "./errors";

/** A step's runs as flat per-token arrays, in run order. */
export interface FlatStep {
  readonly total: number;
  readonly tokens: Int32Array;
  readonly sequences: Int32Array;
  readonly positions: Int32Array;
  /** 1 where that token's logits row is wanted. */
  readonly wantLogits: Uint8Array;
  /** Rows of logits the step returns (the sum of wantLogits). */
  readonly rows: number;
}

/** Flattens validated runs; `lengthOf` gives each sequence's length before the step. */
export function flattenRuns(
  runs: readonly SequenceRun[],
  total: number,
  lengthOf: (sequence: number) => number,
): FlatStep {
  const tokens = new Int32Array(total);
  const sequences = new Int32Array(total);
  const positions = new Int32Array(total);
  const wantLogits = new Uint8Array(total);
  let at = 0;
  let rows = 0;
  for (const run of runs) {
    const start = lengthOf(run.sequence);
    const mode = run.logits ?? "last";
    const last = run.tokens.length - 1;
    for (let i = 0; i < run.tokens.length; i++) {
      tokens[at] = run.tokens[i]!;
      sequences[at] = run.sequence;
      positions[at] = start + i;
      const want = mode === "all" || (mode === "last" && i === last);
      wantLogits[at] = want ? 1 : 0;
      rows += want ? 1 : 0;
      at++;
    }
  }
  return { total, tokens, sequences, positions, wantLogits, rows };
}

/** Throws BAD_OPTION for a reduction that is not "full", "argmax" or a top-k in 1..vocab. */
export function checkReduction(reduce: LogitsReduction | undefined, vocabSize: number): void {
  if (reduce === undefined || reduce === "full" || reduce === "argmax") {
    return;
  }
  const k = (reduce as { topK?: unknown }).topK;
  if (typeof k !== "number" || !Number.isInteger(k) || k < 1 || k > vocabSize) {
    throw new EngineError(
      EngineErrorCode.BAD_OPTION,
      `could not run the step - logits reduction ${JSON.stringify(reduce)} must be "full", "argmax" or { topK: 1..${vocabSize} }.`,
    );
  }
}

/**
 * The k largest values of each row, highest first; equal values: lower index first (so k = 1 is
 * the argmax that greedy sampling picks). NaN sorts below every number.
 */
export function topKRows(logits: Float32Array, rows: number, vocab: number, k: number): TopLogits {
  const ids = new Int32Array(rows * k);
  const values = new Float32Array(rows * k);
  const heapIds = new Int32Array(k);
  const heapValues = new Float32Array(k);
  // "a ranks before b": higher value, or equal value and lower id.
  const before = (va: number, ia: number, vb: number, ib: number): boolean => {
    const nanA = Number.isNaN(va);
    const nanB = Number.isNaN(vb);
    if (nanA || nanB) {
      return nanA && nanB ? ia < ib : nanB;
    }
    return va > vb || (va === vb && ia < ib);
  };
  for (let r = 0; r < rows; r++) {
    const base = r * vocab;
    // A min-heap (by rank) of the best k seen so far: the root is the worst of them.
    let size = 0;
    const siftDown = (at: number): void => {
      for (;;) {
        const l = 2 * at + 1;
        const rr = l + 1;
        let worst = at;
        if (l < size && before(heapValues[worst]!, heapIds[worst]!, heapValues[l]!, heapIds[l]!)) {
          worst = l;
        }
        if (
          rr < size &&
          before(heapValues[worst]!, heapIds[worst]!, heapValues[rr]!, heapIds[rr]!)
        ) {
          worst = rr;
        }
        if (worst === at) {
          return;
        }
        [heapValues[at], heapValues[worst]] = [heapValues[worst]!, heapValues[at]!];
        [heapIds[at], heapIds[worst]] = [heapIds[worst]!, heapIds[at]!];
        at = worst;
      }
    };
    for (let i = 0; i < vocab; i++) {
      const v = logits[base + i]!;
      if (size < k) {
        // sift up
        let at = size++;
        heapValues[at] = v;
        heapIds[at] = i;
        while (at > 0) {
          const parent = (at - 1) >> 1;
          if (!before(heapValues[parent]!, heapIds[parent]!, heapValues[at]!, heapIds[at]!)) {
            break;
          }
          [heapValues[at], heapValues[parent]] = [heapValues[parent]!, heapValues[at]!];
          [heapIds[at], heapIds[parent]] = [heapIds[parent]!, heapIds[at]!];
          at = parent;
        }
      } else if (v < heapValues[0]!) {
        // Below the worst kept (both numbers): it cannot rank before it. Most of a vocabulary
        // stops here, one comparison instead of a call.
      } else if (before(v, i, heapValues[0]!, heapIds[0]!)) {
        heapValues[0] = v;
        heapIds[0] = i;
        siftDown(0);
      }
    }
    const order = Array.from({ length: size }, (_, j) => j).sort((a, b) =>
      before(heapValues[a]!, heapIds[a]!, heapValues[b]!, heapIds[b]!) ? -1 : 1,
    );
    for (let j = 0; j < size; j++) {
      ids[r * k + j] = heapIds[order[j]!]!;
      values[r * k + j] = heapValues[order[j]!]!;
    }
  }
  return { k, ids, logits: values };
}

/** Index of the largest value in each row (lowest index on ties; NaN never wins over a number). */
export function argmaxRows(logits: Float32Array, rows: number, vocab: number): Int32Array {
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    const base = r * vocab;
    // The first number is the first best (0 if the row is all NaN); after it a NaN never wins,
    // so the scan is one comparison per logit (a greedy step's 128k-entry row in ~0.1 ms, where
    // testing for NaN at every entry took twice as long).
    let first = 0;
    while (first < vocab && Number.isNaN(logits[base + first]!)) {
      first++;
    }
    if (first === vocab) {
      out[r] = 0;
      continue;
    }
    let best = first;
    let bestValue = logits[base + first]!;
    for (let i = first + 1; i < vocab; i++) {
      const v = logits[base + i]!;
      if (v > bestValue) {
        best = i;
        bestValue = v;
      }
    }
    out[r] = best;
  }
  return out;
}

/**
 * A backend's own {@link topKRows} (e.g. native code): the same ranking and the same output, faster.
 * With one, k = 1 gives the argmax too (the same id argmaxRows picks).
 */
export type TopKRowsFunction = (
  logits: Float32Array,
  rows: number,
  vocab: number,
  k: number,
) => TopLogits;

/** One run's rows with its reduction applied on the host (by `topK` when a backend brings one). */
export function reduceRows(
  sequence: number,
  rows: number,
  logits: Float32Array,
  vocab: number,
  reduce: LogitsReduction | undefined,
  topK?: TopKRowsFunction,
): RunLogits {
  if (reduce === undefined || reduce === "full") {
    return { sequence, rows, logits };
  }
  if (reduce === "argmax") {
    const argmax =
      topK === undefined ? argmaxRows(logits, rows, vocab) : topK(logits, rows, vocab, 1).ids;
    return { sequence, rows, logits: new Float32Array(0), argmax };
  }
  const top = (topK ?? topKRows)(logits, rows, vocab, reduce.topK);
  const argmax = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    argmax[r] = top.ids[r * top.k]!;
  }
  return { sequence, rows, logits: new Float32Array(0), argmax, top };
}

/**
 * Calls `f` with each run, the index of its first logit row in the step's flat order, and how
 * many rows it has (its tokens that want logits).
 */
export function forEachRunRows(
  runs: readonly SequenceRun[],
  wantLogits: Uint8Array,
  f: (run: SequenceRun, row: number, rows: number) => void,
): void {
  let row = 0;
  let index = 0;
  for (const run of runs) {
    let rows = 0;
    for (let i = 0; i < run.tokens.length; i++) {
      rows += wantLogits[index + i]!;
    }
    f(run, row, rows);
    row += rows;
    index += run.tokens.length;
  }
}

/** Splits a step's logits ([rows × vocab] in flat order) back per run, reducing where asked. */
export function splitLogits(
  runs: readonly SequenceRun[],
  flat: FlatStep,
  logits: Float32Array,
  vocab: number,
  topK?: TopKRowsFunction,
): RunLogits[] {
  const result: RunLogits[] = [];
  forEachRunRows(runs, flat.wantLogits, (run, row, rows) => {
    result.push(
      reduceRows(
        run.sequence,
        rows,
        logits.subarray(row * vocab, (row + rows) * vocab),
        vocab,
        run.reduce,
        topK,
      ),
    );
  });
  return result;
}

/**
 * Runs async jobs one at a time, in call order. Each caller gets its own job's result or error:
 * a failing job never rejects the callers queued behind it.
 */
export class StepQueue {
  #tail: Promise<unknown> = Promise.resolve();
  #busy = 0;

  /** True while a job runs or waits. */
  get busy(): boolean {
    return this.#busy > 0;
  }

  run<T>(job: () => Promise<T>): Promise<T> {
    this.#busy++;
    const result = this.#tail.then(job, job);
    const settle = () => {
      this.#busy--;
    };
    this.#tail = result.then(settle, settle);
    return result;
  }

  /** Resolves once every job queued so far has settled. */
  async idle(): Promise<void> {
    await this.#tail;
  }
}
