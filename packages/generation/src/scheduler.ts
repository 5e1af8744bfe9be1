/**
 * Continuous batching: every active generation contributes to one backend step per iteration —
 * a chunk of its prompt while prefilling, one token while decoding — so concurrent generations
 * share the weight reads of each step. Jobs join and leave between steps. Because backends are
 * batch-invariant, a generation's tokens do not depend on what else is running.
 */
import type {
  CompiledModel,
  LogitsReduction,
  SequenceRun,
  TopLogits,
} from "@bitnet-ts/engine-core";

interface Port {
  onmessage: (() => void) | null;
  postMessage(message: unknown): void;
  close(): void;
}

/**
 * Runs `callback` on a fresh macrotask, after pending I/O and events: `setImmediate` in Node;
 * browsers have none, and a MessageChannel message is their unclamped equivalent (a nested
 * `setTimeout(0)` waits at least 4 ms).
 */
function nextMacrotask(callback: () => void): void {
  if (typeof setImmediate === "function") {
    setImmediate(callback);
    return;
  }
  // Typed by hand: @types/node describes Node's MessagePort, without the DOM's onmessage.
  const channel = new MessageChannel() as unknown as { port1: Port; port2: Port };
  channel.port1.onmessage = () => {
    channel.port1.close();
    callback();
  };
  channel.port2.postMessage(undefined);
}

export interface SchedulerJob {
  readonly sequence: number;
  /** Prompt tokens not yet evaluated. */
  pending: number[];
  /** The token to evaluate next while decoding (undefined while prefilling or when done). */
  next: number | undefined;
  /**
   * Drafted tokens to evaluate right after `next` in the same step (speculative decoding): the
   * job then gets a logits row for `next` and for each of them, to verify them all at once.
   */
  draft?: number[];
  readonly signal: AbortSignal | undefined;
  /**
   * What the job needs of its logits rows: "argmax" (greedy sampling) lets a backend return one
   * id instead of the vocabulary, `{ topK }` (a sampler whose chain starts with top-k) the best
   * k ids and logits. Default "full".
   */
  readonly reduce?: LogitsReduction;
  /**
   * Called when the job's evaluated tokens asked for logits: the row (empty when the job asked
   * for a reduction), for "argmax" or a top-k the id of the largest logit, and for a top-k the
   * best k of each row (`top`). With a draft, `rows` is 1 + its length and `logits` /
   * `argmaxRows` hold a row per evaluated token, in order. `logits` is valid only during the call
   * (the backend may reuse it for the next step).
   */
  onLogits(
    logits: Float32Array,
    argmax: number | undefined,
    rows: number,
    argmaxRows: Int32Array | undefined,
    top?: TopLogits,
  ): void;
  /** Called when the job must stop because of an abort or a failed step. */
  onError(error: unknown): void;
  onAbort(): void;
  done: boolean;
}

export interface SchedulerOptions {
  /** Most prompt tokens one job evaluates per step (default 256). */
  readonly prefillChunk?: number;
  /** Most tokens per step across jobs (default 512); decoding jobs are always included. */
  readonly batchBudget?: number;
}

export class Scheduler {
  readonly #model: CompiledModel;
  readonly #jobs: SchedulerJob[] = [];
  readonly #prefillChunk: number;
  readonly #budget: number;
  #running = false;
  /** Steps executed and tokens evaluated, for metrics. */
  steps = 0;
  evaluatedTokens = 0;
  /** Called after each step with the number of sequences it contained (metrics). */
  onStep: ((sequences: number, tokens: number, ms: number) => void) | undefined;

  constructor(model: CompiledModel, options: SchedulerOptions = {}) {
    this.#model = model;
    this.#prefillChunk = options.prefillChunk ?? 256;
    this.#budget = options.batchBudget ?? 512;
  }

  get activeJobs(): number {
    return this.#jobs.length;
  }

  add(job: SchedulerJob): void {
    this.#jobs.push(job);
    if (!this.#running) {
      this.#running = true;
      // Start on a fresh tick so several jobs added together share the first step.
      nextMacrotask(() => void this.#loop());
    }
  }

  async #loop(): Promise<void> {
    try {
      while (this.#jobs.length > 0) {
        this.#dropFinished();
        if (this.#jobs.length === 0) {
          break;
        }
        const runs: SequenceRun[] = [];
        const members: SchedulerJob[] = [];
        let budget = this.#budget;
        // Decoding jobs first (one token each): they are latency-sensitive.
        for (const job of this.#jobs) {
          if (job.pending.length === 0 && job.next !== undefined) {
            const draft = job.draft ?? [];
            runs.push({
              sequence: job.sequence,
              tokens: [job.next, ...draft],
              logits: draft.length > 0 ? "all" : "last",
              ...(job.reduce === undefined ? {} : { reduce: job.reduce }),
              transient: true, // onLogits consumes the rows before the job's next step
            });
            members.push(job);
            job.next = undefined;
            job.draft = undefined;
            budget -= 1 + draft.length;
          }
        }
        for (const job of this.#jobs) {
          if (job.pending.length > 0 && budget > 0) {
            const n = Math.min(job.pending.length, this.#prefillChunk, budget);
            const tokens = job.pending.splice(0, n);
            runs.push({
              sequence: job.sequence,
              tokens,
              logits: job.pending.length === 0 ? "last" : "none",
              ...(job.reduce === undefined ? {} : { reduce: job.reduce }),
              transient: true,
            });
            members.push(job);
            budget -= n;
          }
        }
        if (runs.length === 0) {
          // Every job is waiting on its consumer: nothing to evaluate until one continues.
          await new Promise((resolve) => setTimeout(resolve, 1));
          continue;
        }
        const started = performance.now();
        let result: Awaited<ReturnType<CompiledModel["step"]>>;
        try {
          result = await this.#model.step(runs);
        } catch (error) {
          for (const job of members) {
            job.done = true;
            job.onError(error);
          }
          continue;
        }
        // Let the event loop run between steps (I/O, timers, new requests): a backend whose
        // step settles without a macrotask (the reference backend) would otherwise hold it for
        // the whole generation.
        await new Promise<void>((resolve) => nextMacrotask(resolve));
        this.steps++;
        const tokens = runs.reduce((n, r) => n + r.tokens.length, 0);
        this.evaluatedTokens += tokens;
        this.onStep?.(runs.length, tokens, performance.now() - started);
        result.runs.forEach((run, i) => {
          const job = members[i]!;
          if (run.rows > 0 && !job.done) {
            try {
              const vocab = this.#model.description.hparams.vocabSize;
              job.onLogits(
                run.rows > 1 ? run.logits : run.logits.subarray(0, vocab),
                run.argmax?.[0],
                run.rows,
                run.argmax,
                run.top,
              );
            } catch (error) {
              job.done = true;
              job.onError(error);
            }
          }
        });
      }
    } finally {
      this.#running = false;
      if (this.#jobs.length > 0) {
        this.#running = true;
        nextMacrotask(() => void this.#loop());
      }
    }
  }

  #dropFinished(): void {
    for (let i = this.#jobs.length - 1; i >= 0; i--) {
      const job = this.#jobs[i]!;
      if (!job.done && job.signal?.aborted) {
        job.done = true;
        job.onAbort();
      }
      if (job.done) {
        this.#jobs.splice(i, 1);
      }
    }
  }
}
