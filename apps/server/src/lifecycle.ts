/**
 * The server's life. It listens before the model is loaded: /health and every route that needs
 * the model answer 503 "Loading model" until the load finishes. close() stops accepting, lets
 * in-flight generations finish within a grace period, cancels the rest, then frees the model.
 */
import type { BackendOptions } from "@bitnet-ts/engine-core";
import {
  type Drafter,
  type LoadedDrafter,
  loadDrafter,
  TextGenerator,
} from "@bitnet-ts/generation";
import type { FastifyInstance } from "fastify";
import type { Admission } from "./admission";
import { ApiError, loadingModel, shuttingDown } from "./errors";
import type { ServerOptions } from "./options";

/** What a load gives the server: the generator, and the drafter when `draft` is set. */
export interface Loaded {
  readonly generator: TextGenerator;
  readonly draft?: LoadedDrafter;
}

export class Lifecycle {
  #generator: TextGenerator | undefined;
  #draft: LoadedDrafter | undefined;
  #closing = false;
  #ready: Promise<void> = Promise.resolve();
  readonly #inflight = new Set<AbortController>();

  /** The model once loaded. */
  get generator(): TextGenerator | undefined {
    return this.#generator;
  }

  /** The drafter every generation uses (speculative decoding), if the server has one. */
  get drafter(): Drafter | undefined {
    return this.#draft?.drafter;
  }

  /** Resolves when the model is loaded; rejects if loading failed. */
  get ready(): Promise<void> {
    return this.#ready;
  }

  /** The loaded model, or the 503 a request gets while loading or shutting down. */
  loaded(): TextGenerator {
    if (this.#closing) {
      throw shuttingDown();
    }
    if (this.#generator === undefined) {
      throw loadingModel();
    }
    return this.#generator;
  }

  /** Why /health is not ok ("Loading model", "Shutting down"), or undefined while serving. */
  unavailable(): string | undefined {
    if (this.#closing) {
      return "Shutting down";
    }
    return this.#generator === undefined ? "Loading model" : undefined;
  }

  /** Starts loading; requests are served once it resolves. */
  load(load: () => Promise<Loaded>): Promise<void> {
    this.#ready = load().then(({ generator, draft }) => {
      this.#generator = generator;
      this.#draft = draft;
    });
    return this.#ready;
  }

  /** Tracks a running generation so close() can cancel it; returns the function that untracks it. */
  track(abort: AbortController): () => void {
    this.#inflight.add(abort);
    return () => this.#inflight.delete(abort);
  }

  /** Stops accepting, waits up to `graceMs` for in-flight responses, cancels the rest, frees the model. */
  async close(app: FastifyInstance, admission: Admission, graceMs: number): Promise<void> {
    if (this.#closing) {
      return;
    }
    this.#closing = true;
    admission.close();
    const stopped = app.close(); // stops accepting; resolves when in-flight responses end
    const timer = setTimeout(() => {
      for (const a of this.#inflight) {
        a.abort(new ApiError(503, "unavailable_error", "the server is shutting down"));
      }
    }, graceMs);
    try {
      await stopped;
    } finally {
      clearTimeout(timer);
      await this.#ready.catch(() => {});
      await this.#generator?.dispose();
      await this.#draft?.dispose();
    }
  }
}

/** Default `cacheBytes`: 256 MiB, ~3,400 tokens of bitnet-b1.58-2B-4T's KV cache. */
export const DEFAULT_CACHE_BYTES = 256 * 2 ** 20;

/** The per-backend options of a server: `threads` fills in the CPU backend's thread count. */
function backendOptionsOf(options: ServerOptions): BackendOptions | undefined {
  if (options.threads === undefined) {
    return options.backendOptions;
  }
  return {
    ...options.backendOptions,
    cpu: { threads: options.threads, ...options.backendOptions?.["cpu"] },
  };
}

/** Loads the model and its tokenizer as the server's options say, logging how it went. */
export async function loadGenerator(
  options: ServerOptions,
  describe: { alias: string; parallel: number },
  log: (line: string) => void,
): Promise<Loaded> {
  const started = performance.now();
  const backendOptions = backendOptionsOf(options);
  const generator = await TextGenerator.load(options.model, {
    ...(options.backend === undefined ? {} : { backend: options.backend }),
    ...(options.contextLength === undefined ? {} : { contextLength: options.contextLength }),
    ...(backendOptions === undefined ? {} : { backendOptions }),
    onLog: log,
  });
  const model = generator.model;
  const capacity = model.capacity();
  const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(0);
  // The prompt cache holds KV beside the running requests: at most half the budget.
  const asked = options.cacheBytes ?? DEFAULT_CACHE_BYTES;
  const cacheBytes = Math.min(asked, Math.floor(capacity.kvBudgetBytes / 2));
  if (cacheBytes < asked && options.cacheBytes !== undefined) {
    log(
      `prompt cache: ${mib(asked)} MiB asked, ${mib(cacheBytes)} MiB kept (half the KV budget of ${mib(capacity.kvBudgetBytes)} MiB)`,
    );
  }
  log(
    `model ${describe.alias} loaded in ${(performance.now() - started).toFixed(0)} ms on the ${model.backendName} backend; up to ${describe.parallel} requests at once, context ${model.contextLength} tokens each; KV caches grow as used, within a budget of ${mib(capacity.kvBudgetBytes)} MiB of free memory (${Math.floor(capacity.kvBudgetBytes / capacity.kvBytesPerToken)} tokens in all), of which the prompt cache may keep ${mib(cacheBytes)} MiB`,
  );
  const served =
    cacheBytes === 0
      ? generator
      : new TextGenerator(model, generator.tokenizer, { promptCache: { maxBytes: cacheBytes } });
  if (options.draft === undefined) {
    return { generator: served };
  }
  const draft = await loadDrafter(options.draft, served, {
    ...(options.draftMax === undefined ? {} : { maxDraft: options.draftMax }),
    ...(backendOptions === undefined ? {} : { backendOptions }),
    onLog: (line) => log(`draft: ${line}`),
  }).catch(async (error: unknown) => {
    await served.dispose();
    throw error;
  });
  log(
    `speculative decoding: ${draft.drafter.name}, up to ${draft.drafter.maxDraft} tokens per step`,
  );
  return { generator: served, draft };
}
