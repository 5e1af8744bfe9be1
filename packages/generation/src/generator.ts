/**
 * The text generator: a compiled model, its tokenizer and a scheduler. `generate` streams text
 * as an AsyncIterable; concurrent generations are batched into shared backend steps.
 */
import {
  type BackendName,
  type BackendOptions,
  type CompiledModel,
  type FfnActivation,
  type LoadProgress,
  loadModel,
} from "@bitnet-ts/engine-core";
import { readGgufFile } from "@bitnet-ts/gguf";
import { Sampler, type SamplingSettings } from "@bitnet-ts/logits";
import {
  type ChatMessage,
  type ChatTemplateOptions,
  Tokenizer,
  type TokenizerOptions,
} from "@bitnet-ts/tokenizers";
import type { Drafter, DraftSession } from "./draft";
import { GenerationError, GenerationErrorCode } from "./errors";
import { PromptCache, type PromptCacheOptions } from "./prompt-cache";
import { Scheduler, type SchedulerJob, type SchedulerOptions } from "./scheduler";
import { StopMatcher } from "./stop";

export type FinishReason = "stop" | "length" | "abort" | "context";

export interface GenerateOptions extends SamplingSettings {
  /** Most tokens to generate (default 128; -1 = until EOS or the context is full). */
  readonly maxTokens?: number;
  /** Stop when one of these strings is generated (it is not included in the text). */
  readonly stop?: readonly string[];
  /** Keep generating after end-of-generation tokens (default false). */
  readonly ignoreEos?: boolean;
  /** Prepend BOS to a text prompt (default: the model's add_bos setting). */
  readonly addBos?: boolean;
  /** Parse special tokens written in a text prompt (default false). */
  readonly parseSpecial?: boolean;
  readonly signal?: AbortSignal;
  /**
   * Start from the generator's prompt cache and leave the KV cache there afterwards (default
   * true; llama-server's `cache_prompt`). No effect on a generator without a prompt cache.
   */
  readonly cachePrompt?: boolean;
  /**
   * Speculative decoding: a drafter guesses the next tokens and the model checks them in one
   * batched step. The output is the model's either way (greedy: the same tokens; sampled: the same
   * distribution); only the speed changes. See PromptLookupDrafter and ModelDrafter.
   */
  readonly draft?: Drafter;
}

/** What speculative decoding did in one generation. */
export interface SpeculativeStats {
  readonly drafter: string;
  /** Drafted tokens the model evaluated. */
  readonly drafted: number;
  /** Of those, the ones it accepted (each saved a step). */
  readonly accepted: number;
  /** Decode steps that carried a draft. */
  readonly steps: number;
}

export interface GenerationTimings {
  /** Milliseconds from the request to the first generated token (prompt evaluation). */
  readonly promptMs: number;
  /** Milliseconds spent generating after the first token. */
  readonly generationMs: number;
  readonly promptTokens: number;
  readonly generatedTokens: number;
  readonly promptTokensPerSecond: number;
  readonly generatedTokensPerSecond: number;
}

export interface GenerationResult {
  readonly promptTokens: readonly number[];
  /** Leading prompt tokens that were not evaluated: their KV cache was reused. */
  readonly cachedTokens: number;
  readonly tokens: readonly number[];
  readonly text: string;
  readonly finishReason: FinishReason;
  /** The sampler seed actually used (replay with the same settings gives the same tokens). */
  readonly seed: number;
  readonly timings: GenerationTimings;
  /** Set when the generation drafted (GenerateOptions.draft). */
  readonly speculative?: SpeculativeStats;
}

/** A running generation: iterate it for text pieces, or await `result`. */
export interface Generation extends AsyncIterable<string> {
  readonly result: Promise<GenerationResult>;
  /** Stops the generation (like aborting its signal). */
  cancel(): void;
}

/** How a TextGenerator schedules and caches. */
export interface GeneratorOptions extends SchedulerOptions {
  /**
   * Keep the KV caches of finished generations for later prompts that share their prefix
   * (see PromptCache); by default nothing is kept.
   */
  readonly promptCache?: PromptCacheOptions;
}

export interface TextGeneratorOptions extends GeneratorOptions {
  readonly backend?: BackendName;
  readonly contextLength?: number;
  /** Options per backend, e.g. `{ cpu: { threads: 4, mmap: false } }` (see @bitnet-ts/kernels-cpu). */
  readonly backendOptions?: BackendOptions;
  /** Progress while the backend maps, repacks or uploads the weights. */
  readonly onProgress?: (progress: LoadProgress) => void;
  readonly ffnActivation?: FfnActivation;
  readonly tokenizer?: TokenizerOptions;
  readonly onLog?: (message: string) => void;
}

export class TextGenerator {
  readonly model: CompiledModel;
  readonly tokenizer: Tokenizer;
  readonly scheduler: Scheduler;
  /** Set when the generator was given `promptCache` options. */
  readonly promptCache: PromptCache | undefined;
  #disposed = false;

  constructor(model: CompiledModel, tokenizer: Tokenizer, options: GeneratorOptions = {}) {
    this.model = model;
    this.tokenizer = tokenizer;
    this.scheduler = new Scheduler(model, options);
    this.promptCache =
      options.promptCache === undefined ? undefined : new PromptCache(model, options.promptCache);
  }

  /**
   * Loads a GGUF model and its tokenizer.
   *
   * @example
   * const generator = await TextGenerator.load("model.gguf");
   * for await (const text of generator.generate("Once upon a time", { maxTokens: 32 })) {
   *   process.stdout.write(text);
   * }
   */
  static async load(path: string, options: TextGeneratorOptions = {}): Promise<TextGenerator> {
    const model = await loadModel(path, {
      ...(options.backend === undefined ? {} : { backend: options.backend }),
      ...(options.contextLength === undefined ? {} : { contextLength: options.contextLength }),
      ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
      ...(options.ffnActivation === undefined ? {} : { ffnActivation: options.ffnActivation }),
      ...(options.onLog === undefined ? {} : { onLog: options.onLog }),
      ...(options.backendOptions === undefined ? {} : { backendOptions: options.backendOptions }),
    });
    const tokenizer = Tokenizer.fromGguf(model.description.file.metadata, options.tokenizer ?? {});
    return new TextGenerator(model, tokenizer, options);
  }

  /** Loads only a tokenizer from a GGUF header (cheap). */
  static async tokenizerFor(path: string, options: TokenizerOptions = {}): Promise<Tokenizer> {
    return Tokenizer.fromGguf((await readGgufFile(path)).metadata, options);
  }

  #alive(): void {
    if (this.#disposed) {
      throw new GenerationError(
        GenerationErrorCode.DISPOSED,
        "could not generate - the generator was disposed.",
      );
    }
  }

  /** Generates a continuation of a text or token prompt. */
  generate(prompt: string | readonly number[], options: GenerateOptions = {}): Generation {
    this.#alive();
    const promptTokens =
      typeof prompt === "string"
        ? this.tokenizer.encode(prompt, {
            ...(options.addBos === undefined ? {} : { addBos: options.addBos }),
            parseSpecial: options.parseSpecial ?? false,
          })
        : [...prompt];
    return this.#start(promptTokens, options, undefined);
  }

  /** Renders a chat with the model's template and generates the assistant's reply. */
  generateChat(
    messages: readonly ChatMessage[],
    options: GenerateOptions & { template?: ChatTemplateOptions } = {},
  ): Generation {
    this.#alive();
    return this.#start(
      this.tokenizer.encodeChat(messages, options.template ?? {}),
      options,
      undefined,
    );
  }

  /**
   * Generation on an existing sequence whose first `reuse` tokens are already evaluated
   * (chat sessions reuse their KV cache). The sequence is kept, not freed, at the end.
   */
  generateOnSequence(
    sequence: number,
    promptTokens: readonly number[],
    reuse: number,
    options: GenerateOptions,
  ): Generation {
    this.#alive();
    return this.#start([...promptTokens], options, { sequence, reuse });
  }

  #start(
    promptTokens: number[],
    options: GenerateOptions,
    existing: { sequence: number; reuse: number } | undefined,
  ): Generation {
    const ctx = this.model.contextLength;
    const maxTokens = options.maxTokens ?? 128;
    if (!Number.isInteger(maxTokens) || maxTokens < -1) {
      throw new GenerationError(
        GenerationErrorCode.BAD_OPTION,
        `could not generate - maxTokens = ${maxTokens}; expected a non-negative integer or -1.`,
      );
    }
    if (promptTokens.length === 0) {
      throw new GenerationError(
        GenerationErrorCode.BAD_OPTION,
        "could not generate - the prompt is empty (no tokens, not even BOS).",
      );
    }
    if (promptTokens.length >= ctx) {
      throw new GenerationError(
        GenerationErrorCode.PROMPT_TOO_LONG,
        `could not generate - the prompt has ${promptTokens.length} tokens but the context holds ${ctx}; shorten it or raise the context length.`,
      );
    }
    const vocab = this.model.description.hparams.vocabSize;
    if (options.draft?.vocabSize !== undefined && options.draft.vocabSize !== vocab) {
      throw new GenerationError(
        GenerationErrorCode.BAD_OPTION,
        `could not draft with ${options.draft.name} - its vocabulary has ${options.draft.vocabSize} tokens and the model's ${vocab}; a draft model must share the model's vocabulary.`,
      );
    }
    const sampler = new Sampler(options, {
      contextLength: ctx,
      vocabSize: vocab,
      ...(this.tokenizer.tokenId("Ċ") === undefined
        ? {}
        : { newlineToken: this.tokenizer.tokenId("Ċ")! }),
    });
    for (const t of promptTokens) {
      sampler.accept(t);
    }
    const cache =
      existing === undefined && options.cachePrompt !== false ? this.promptCache : undefined;
    const start = existing ??
      cache?.take(promptTokens) ?? { sequence: this.model.createSequence(), reuse: 0 };
    const { sequence, reuse } = start;
    const keepSequence = existing !== undefined;
    const decoder = this.tokenizer.createDecoder();
    const stopper = new StopMatcher(options.stop ?? []);
    const eog = new Set(options.ignoreEos ? [] : this.tokenizer.endOfGenerationIds());
    const generated: number[] = [];
    let text = "";
    const started = performance.now();
    let firstTokenAt: number | undefined;
    const queue: string[] = [];
    let waiting: (() => void) | undefined;
    let finished = false;
    let failure: unknown;
    let resolveResult!: (r: GenerationResult) => void;
    let rejectResult!: (e: unknown) => void;
    const result = new Promise<GenerationResult>((resolve, reject) => {
      resolveResult = resolve;
      rejectResult = reject;
    });
    result.catch(() => {}); // consumers that only iterate still see the error there
    const wake = (): void => {
      const w = waiting;
      waiting = undefined;
      w?.();
    };
    const emit = (piece: string): void => {
      if (piece.length > 0) {
        text += piece;
        queue.push(piece);
        wake();
      }
    };
    // Speculative decoding's state.
    const drafter = options.draft;
    let session: DraftSession | undefined;
    let proposing: Promise<unknown> | undefined;
    let drafted = 0;
    let accepted = 0;
    let draftSteps = 0;
    // Draft length adapts to how the drafts fare (as Hugging Face's assisted generation does): up
    // by 2 after a step that accepted them all, down to one more than were accepted otherwise. A
    // rejected token costs a row of a batched step (9 rows cost ~4 single ones on a CPU), so a
    // drafter that keeps missing must not keep drafting long.
    let draftLength = drafter?.maxDraft ?? 0;
    const endDrafting = (): void => {
      const s = session;
      session = undefined;
      if (s !== undefined) {
        // A draft model may be mid-step: end the session once its proposal settles.
        void (proposing ?? Promise.resolve()).finally(() => s.end());
      }
    };
    const abort = new AbortController();
    const signal =
      options.signal === undefined ? abort.signal : AbortSignal.any([options.signal, abort.signal]);
    /** Leaves the sequence to the prompt cache (what it evaluated), or frees it. */
    const release = (): void => {
      try {
        if (cache !== undefined && failure === undefined) {
          const length = this.model.sequenceLength(sequence);
          cache.store(sequence, [...promptTokens, ...generated].slice(0, length));
        } else {
          this.model.freeSequence(sequence);
        }
      } catch {
        // already freed (model disposed)
      }
    };
    const finish = (reason: FinishReason): void => {
      if (finished) {
        return;
      }
      finished = true;
      job.done = true;
      endDrafting();
      // Any bytes of an unfinished character become U+FFFD (never half a UTF-8 sequence).
      const tail = decoder.flush();
      emit(reason === "stop" ? stopper.flush() : stopper.flush() + tail);
      if (!keepSequence) {
        release();
      }
      const end = performance.now();
      const firstAt = firstTokenAt ?? end;
      const promptMs = firstAt - started;
      const generationMs = end - firstAt;
      resolveResult({
        promptTokens,
        cachedTokens: reuse,
        tokens: generated,
        text,
        finishReason: reason,
        seed: sampler.seed,
        ...(drafter === undefined
          ? {}
          : { speculative: { drafter: drafter.name, drafted, accepted, steps: draftSteps } }),
        timings: {
          promptMs,
          generationMs,
          promptTokens: promptTokens.length - reuse,
          generatedTokens: generated.length,
          promptTokensPerSecond:
            promptMs > 0 ? ((promptTokens.length - reuse) * 1000) / promptMs : 0,
          generatedTokensPerSecond:
            generationMs > 0 && generated.length > 1
              ? ((generated.length - 1) * 1000) / generationMs
              : 0,
        },
      });
      wake();
    };
    /** The drafted tokens in the step now running. */
    let evaluatingDraft: number[] = [];
    /** Drops KV entries past `length` (rejected drafts). */
    const cut = (length: number): void => {
      if (this.model.sequenceLength(sequence) > length) {
        this.model.truncateSequence(sequence, length);
      }
    };
    /**
     * Takes one generated token; false when the generation finished with it. `kvLength` is what
     * the KV cache will hold if it goes on (for the context check).
     */
    const take = (token: number, kvLength: number): boolean => {
      if (eog.has(token)) {
        finish("stop");
        return false;
      }
      generated.push(token);
      sampler.accept(token);
      const piece = decoder.push(token);
      const { emit: safe, stopped } = stopper.push(piece);
      emit(safe);
      if (stopped) {
        finish("stop");
        return false;
      }
      if (maxTokens !== -1 && generated.length >= maxTokens) {
        finish("length");
        return false;
      }
      if (kvLength >= ctx) {
        finish("context");
        return false;
      }
      return true;
    };
    /** Queues `token` for the next step, with a draft when drafting (`kvLength`: the KV's length). */
    const continueWith = (token: number, kvLength: number): void => {
      if (drafter === undefined) {
        job.next = token;
        return;
      }
      session ??= drafter.begin(promptTokens);
      const remaining = maxTokens === -1 ? Number.POSITIVE_INFINITY : maxTokens - generated.length;
      const room = Math.min(draftLength, ctx - kvLength - 1, remaining - 1);
      if (room <= 0) {
        job.next = token;
        return;
      }
      const schedule = (draft: readonly number[]): void => {
        if (finished) {
          return;
        }
        evaluatingDraft = draft.slice(0, room);
        job.draft = evaluatingDraft.length > 0 ? evaluatingDraft : undefined;
        job.next = token;
      };
      let proposal: readonly number[] | Promise<readonly number[]>;
      try {
        proposal = session.propose([...promptTokens, ...generated], room);
      } catch {
        proposal = [];
      }
      if (Array.isArray(proposal)) {
        schedule(proposal as readonly number[]);
        return;
      }
      proposing = (proposal as Promise<readonly number[]>).then(schedule, () => schedule([]));
    };
    const job: SchedulerJob = {
      sequence,
      pending: promptTokens.slice(reuse),
      next: undefined,
      signal,
      done: false,
      // A draft's rows are checked against whole rows (sampler.verify), or their argmax.
      reduce: drafter === undefined || sampler.reduction === "argmax" ? sampler.reduction : "full",
      onLogits: (logits, argmax, rows, argmaxRows, top) => {
        firstTokenAt ??= performance.now();
        if (rows <= 1) {
          // A top-k reduction also names its first id as the argmax: the draw comes from `top`.
          const token =
            top !== undefined
              ? sampler.sampleTop(top.ids.subarray(0, top.k), top.logits.subarray(0, top.k))
              : (argmax ?? sampler.sample(logits));
          if (take(token, this.model.sequenceLength(sequence))) {
            continueWith(token, this.model.sequenceLength(sequence));
          }
          return;
        }
        // A step with a draft: row i holds the logits after the i-th evaluated token, so it
        // checks draft token i + 1; the first rejection gives the model's own token instead, and
        // when all are accepted the last row gives one more.
        const draft = evaluatingDraft;
        evaluatingDraft = [];
        const after = this.model.sequenceLength(sequence);
        const before = after - rows; // KV length before the step
        drafted += draft.length;
        draftSteps++;
        let consumed = 0;
        for (let i = 0; i < rows; i++) {
          const row = logits.length === 0 ? logits : logits.subarray(i * vocab, (i + 1) * vocab);
          const proposed = draft[i];
          let token: number;
          let ok = false;
          if (proposed === undefined) {
            token = argmaxRows?.[i] ?? sampler.sample(row);
          } else if (argmaxRows !== undefined) {
            token = argmaxRows[i]!;
            ok = token === proposed;
          } else {
            ({ token, accepted: ok } = sampler.verify(row, proposed));
          }
          // The KV holds the evaluated tokens up to this row's input; an accepted draft's own
          // KV entry is kept only once it is taken as generated.
          const keep = before + 1 + consumed;
          if (!take(token, keep + (ok ? 1 : 0))) {
            cut(keep + (ok && !eog.has(token) ? 1 : 0));
            return;
          }
          if (!ok) {
            cut(keep);
            draftLength = Math.max(1, consumed + 1);
            continueWith(token, keep);
            return;
          }
          consumed++;
          accepted++;
        }
        // Every draft accepted: the last row's token was generated above (not evaluated).
        draftLength = Math.min(drafter?.maxDraft ?? 0, draftLength + 2);
        continueWith(generated[generated.length - 1]!, after);
      },
      onError: (error) => {
        if (finished) {
          return;
        }
        finished = true;
        failure = error;
        endDrafting();
        if (!keepSequence) {
          release();
        }
        rejectResult(error);
        wake();
      },
      onAbort: () => finish("abort"),
    };
    if (maxTokens === 0) {
      // Nothing to generate: still evaluate nothing and report.
      queueMicrotask(() => finish("length"));
    } else {
      if (job.pending.length === 0) {
        throw new GenerationError(
          GenerationErrorCode.BAD_OPTION,
          "could not generate - every prompt token is already evaluated; nothing to condition on.",
        );
      }
      this.scheduler.add(job);
    }
    const iterator = async function* (): AsyncGenerator<string> {
      for (;;) {
        if (queue.length > 0) {
          yield queue.shift()!;
          continue;
        }
        if (failure !== undefined) {
          throw failure;
        }
        if (finished) {
          return;
        }
        await new Promise<void>((resolve) => {
          waiting = resolve;
        });
      }
    };
    return {
      result,
      cancel: () => abort.abort(),
      [Symbol.asyncIterator]: iterator,
    };
  }

  async dispose(): Promise<void> {
    this.#disposed = true;
    this.promptCache?.clear();
    await this.model.dispose();
  }
}
