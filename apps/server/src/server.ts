/**
 * The OpenAI-compatible server. One TextGenerator serves every request: up to `parallel`
 * generations decode together (one batched backend step per token for all of them), new
 * requests join between steps, a bounded queue waits behind them and anything beyond it is
 * refused with 503 + Retry-After. A client that disconnects cancels its generation and frees
 * its sequence at once. `close()` stops accepting, lets in-flight work finish within a grace
 * period, then cancels the rest.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import * as path from "node:path";
import {
  type BackendName,
  type NativeBackendOptions,
  registerBackend,
} from "@bitnet-ts/engine-core";
import {
  type FinishReason,
  type GenerateOptions,
  type Generation,
  TextGenerator,
} from "@bitnet-ts/generation";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { Admission } from "./admission";
import { ApiError, badRequest } from "./errors";
import { createMetrics, type ServerMetrics } from "./metrics";
import {
  type ChatBody,
  type CompletionBody,
  checkTokens,
  messageText,
  parseChat,
  parseCompletion,
  parseDetokenize,
  parseTokenize,
  type SamplingBody,
} from "./schemas";

export interface ServerOptions {
  /** GGUF model to serve. */
  readonly model: string;
  /** Name reported in /v1/models and responses (default: the file name without .gguf). */
  readonly alias?: string;
  readonly host?: string;
  readonly port?: number;
  /** Requests that generate at once, batched together (default 4). */
  readonly parallel?: number;
  /** Requests that may wait for a slot before new ones get 503 (default 64). */
  readonly maxQueue?: number;
  readonly contextLength?: number;
  readonly threads?: number;
  readonly backend?: BackendName;
  readonly backendOptions?: NativeBackendOptions;
  /** Accepted API keys (Authorization: Bearer KEY or X-Api-Key); none = no authentication. */
  readonly apiKeys?: readonly string[];
  /** Longest a request may generate, in seconds (default 600); then it ends with finish_reason "length". */
  readonly timeoutSeconds?: number;
  /** Largest request body in bytes (default 1 MiB). */
  readonly bodyLimit?: number;
  readonly onLog?: (line: string) => void;
}

export interface BitnetServer {
  readonly app: FastifyInstance;
  /** http://host:port once listening. */
  readonly url: string;
  /** Resolves when the model is loaded and /health says ok; rejects if loading failed. */
  readonly ready: Promise<void>;
  /** Stops accepting, finishes in-flight requests within `graceMs` (default 10 s), cancels the rest. */
  close(options?: { graceMs?: number }): Promise<void>;
}

// The native CPU kernels ship with the server; engine-core loads them on demand.
registerBackend("cpu", () => import("@bitnet-ts/kernels-cpu"));

const VERSION = "0.0.0";
const FINGERPRINT = `bitnet-ts-${VERSION}`;

function id(prefix: string): string {
  return `${prefix}-${randomBytes(12).toString("base64url")}`;
}

function digest(key: string): Buffer {
  return createHash("sha256").update(key).digest();
}

/** Constant-time key check: every configured key is compared, equal-length digests only. */
function keyMatches(given: string, keys: readonly Buffer[]): boolean {
  const g = digest(given);
  let ok = false;
  for (const k of keys) {
    ok = timingSafeEqual(g, k) || ok;
  }
  return ok;
}

function openAiFinish(reason: FinishReason): "stop" | "length" {
  return reason === "stop" ? "stop" : "length";
}

export async function startServer(options: ServerOptions): Promise<BitnetServer> {
  const log = options.onLog ?? (() => {});
  const alias = options.alias ?? path.basename(options.model).replace(/\.gguf$/i, "");
  const parallel = options.parallel ?? 4;
  const admission = new Admission(parallel, options.maxQueue ?? 64);
  const timeoutMs = (options.timeoutSeconds ?? 600) * 1000;
  const keys = (options.apiKeys ?? []).map(digest);
  const inflight = new Set<AbortController>();
  let generator: TextGenerator | undefined;
  let closing = false;
  const created = Math.floor(Date.now() / 1000);

  const metrics: ServerMetrics = createMetrics({
    queued: () => admission.queued,
    busy: () => admission.busy,
    sequences: () => generator?.model.sequenceCount ?? 0,
    slots: parallel,
  });

  const app = Fastify({
    bodyLimit: options.bodyLimit ?? 1 << 20,
    // Slow clients cannot hold a connection forever while sending a request.
    requestTimeout: 60_000,
    connectionTimeout: 0,
    keepAliveTimeout: 5_000,
    logger: false,
    return503OnClosing: true,
  });

  // Request bodies are JSON only (fastify also parses text/plain by default).
  app.removeContentTypeParser("text/plain");

  // ---- errors: OpenAI's shape, 4xx for anything the client sent wrong ----
  app.setErrorHandler((error: Error & { code?: string; statusCode?: number }, request, reply) => {
    let api: ApiError;
    if (error instanceof ApiError) {
      api = error;
    } else if (error.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
      api = new ApiError(
        413,
        "invalid_request_error",
        `the request body is larger than ${options.bodyLimit ?? 1 << 20} bytes`,
        {
          code: "body_too_large",
        },
      );
    } else if (error.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") {
      api = new ApiError(
        415,
        "invalid_request_error",
        "send the request body as application/json",
        { code: "unsupported_media_type" },
      );
    } else if (
      error.code === "FST_ERR_CTP_EMPTY_JSON_BODY" ||
      error.code === "FST_ERR_CTP_INVALID_JSON_BODY" ||
      error instanceof SyntaxError
    ) {
      api = badRequest(
        `the request body is not valid JSON (${error.message})`,
        null,
        "invalid_json",
      );
    } else if (
      error.statusCode !== undefined &&
      error.statusCode >= 400 &&
      error.statusCode < 500
    ) {
      api = new ApiError(error.statusCode, "invalid_request_error", error.message, {
        code: error.code ?? null,
      });
    } else {
      log(`error on ${request.method} ${request.url}: ${error.stack ?? error.message}`);
      api = new ApiError(500, "server_error", "the server failed to handle this request", {
        code: "internal_error",
      });
    }
    for (const [k, v] of Object.entries(api.headers)) {
      reply.header(k, v);
    }
    return reply.status(api.status).send(api.toBody());
  });
  app.setNotFoundHandler((request, reply) =>
    reply
      .status(404)
      .send(
        new ApiError(
          404,
          "not_found_error",
          `no route ${request.method} ${request.url.split("?")[0]}`,
          { code: "not_found" },
        ).toBody(),
      ),
  );

  app.addHook("onResponse", async (request, reply) => {
    metrics.requests.inc({
      route: request.routeOptions.url ?? "unknown",
      status: String(reply.statusCode),
    });
  });

  // ---- authentication (everything but /health) ----
  app.addHook("onRequest", async (request) => {
    if (keys.length === 0 || request.url === "/health" || request.url === "/v1/health") {
      return;
    }
    const header = request.headers.authorization;
    const given = header?.startsWith("Bearer ")
      ? header.slice(7)
      : (request.headers["x-api-key"] as string | undefined);
    if (given === undefined || !keyMatches(given, keys)) {
      throw new ApiError(
        401,
        "authentication_error",
        "invalid or missing API key (send Authorization: Bearer KEY)",
        { code: "invalid_api_key" },
      );
    }
  });

  function loaded(): TextGenerator {
    if (closing) {
      throw new ApiError(503, "unavailable_error", "the server is shutting down", {
        code: "shutting_down",
      });
    }
    if (generator === undefined) {
      throw new ApiError(503, "unavailable_error", "Loading model", {
        code: "loading",
        headers: { "retry-after": "1" },
      });
    }
    return generator;
  }

  // ---- health, models, metrics, tokenize ----
  const health = async (_request: FastifyRequest, reply: FastifyReply) => {
    if (closing) {
      return reply
        .status(503)
        .send({ error: { code: 503, message: "Shutting down", type: "unavailable_error" } });
    }
    if (generator === undefined) {
      return reply
        .status(503)
        .send({ error: { code: 503, message: "Loading model", type: "unavailable_error" } });
    }
    return { status: "ok" };
  };
  app.get("/health", health);
  app.get("/v1/health", health);

  app.get("/v1/models", async () => ({
    object: "list",
    data: [
      {
        id: alias,
        object: "model",
        created,
        owned_by: "bitnet-ts",
        ...(generator === undefined
          ? {}
          : {
              meta: {
                n_ctx: generator.model.contextLength,
                n_vocab: generator.tokenizer.vocabSize,
                architecture: String(
                  generator.model.description.file.metadata.get("general.architecture")?.value,
                ),
                backend: generator.model.backendName,
              },
            }),
      },
    ],
  }));

  app.get("/metrics", async (_request, reply) => {
    reply.header("content-type", metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  app.post("/tokenize", async (request) => {
    const body = parseTokenize(request.body);
    const g = loaded();
    const tokens = g.tokenizer.encode(body.content, {
      addBos: body.add_special ?? false,
      parseSpecial: body.parse_special ?? true,
    });
    if (!body.with_pieces) {
      return { tokens };
    }
    const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
    return {
      tokens: tokens.map((t) => {
        const bytes = g.tokenizer.tokenBytes(t, { special: true });
        try {
          return { id: t, piece: decoder.decode(bytes) };
        } catch {
          return { id: t, piece: [...bytes] }; // not valid UTF-8 on its own (part of a character)
        }
      }),
    };
  });

  app.post("/detokenize", async (request) => {
    const body = parseDetokenize(request.body);
    const g = loaded();
    const bad = body.tokens.find((t) => t < 0 || t >= g.tokenizer.vocabSize);
    if (bad !== undefined) {
      throw badRequest(
        `token ${bad} is outside the vocabulary (0..${g.tokenizer.vocabSize - 1})`,
        "tokens",
        "invalid_token",
      );
    }
    return { content: g.tokenizer.decode(body.tokens) };
  });

  // ---- generation ----
  function generateOptions(
    body: SamplingBody,
    promptLength: number,
    g: TextGenerator,
    signal: AbortSignal,
  ): GenerateOptions {
    const ctx = g.model.contextLength;
    const room = ctx - promptLength;
    const asked = body.max_completion_tokens ?? body.max_tokens ?? room;
    const bias: Record<number, number> = {};
    for (const [k, v] of Object.entries(body.logit_bias ?? {})) {
      if (Number(k) >= g.tokenizer.vocabSize) {
        throw badRequest(
          `logit_bias names token ${k}, outside the vocabulary`,
          "logit_bias",
          "invalid_token",
        );
      }
      bias[Number(k)] = v;
    }
    const stop =
      body.stop === undefined || body.stop === null
        ? []
        : typeof body.stop === "string"
          ? [body.stop]
          : body.stop;
    return {
      // OpenAI's defaults where they differ from llama.cpp's (temperature 1, top_p 1).
      temperature: body.temperature ?? 1,
      topP: body.top_p ?? 1,
      ...(body.top_k === undefined || body.top_k === null ? {} : { topK: body.top_k }),
      ...(body.min_p === undefined || body.min_p === null ? {} : { minP: body.min_p }),
      ...(body.typical_p === undefined || body.typical_p === null
        ? {}
        : { typicalP: body.typical_p }),
      ...(body.repeat_penalty === undefined || body.repeat_penalty === null
        ? {}
        : { repeatPenalty: body.repeat_penalty }),
      ...(body.repeat_last_n === undefined || body.repeat_last_n === null
        ? {}
        : { repeatLastN: body.repeat_last_n }),
      presencePenalty: body.presence_penalty ?? 0,
      frequencyPenalty: body.frequency_penalty ?? 0,
      ...(body.seed === undefined || body.seed === null || body.seed === -1
        ? {}
        : { seed: body.seed % 2 ** 32 }),
      logitBias: bias,
      maxTokens: Math.min(asked, room),
      stop,
      ignoreEos: body.ignore_eos === true,
      signal,
    };
  }

  function checkContext(promptLength: number, g: TextGenerator): void {
    const ctx = g.model.contextLength;
    if (promptLength >= ctx) {
      throw new ApiError(
        400,
        "invalid_request_error",
        `the prompt has ${promptLength} tokens but the context holds ${ctx}: shorten it (or start the server with a larger -c)`,
        {
          param: "messages",
          code: "context_length_exceeded",
          extra: { n_prompt_tokens: promptLength, n_ctx: ctx },
        },
      );
    }
  }

  interface Job {
    readonly kind: "chat" | "text";
    readonly body: ChatBody | CompletionBody;
    readonly promptTokens: number[];
  }

  function chatJob(body: ChatBody, g: TextGenerator): Job {
    const messages = body.messages.map((m) => ({
      role: m.role === "developer" ? "system" : m.role,
      content: messageText(m.content),
    }));
    let promptTokens: number[];
    try {
      promptTokens = g.tokenizer.encodeChat(messages, { addGenerationPrompt: true });
    } catch (error) {
      throw badRequest(
        `could not apply the chat template: ${(error as Error).message}`,
        "messages",
        "invalid_messages",
      );
    }
    checkContext(promptTokens.length, g);
    return { kind: "chat", body, promptTokens };
  }

  function completionJob(body: CompletionBody, g: TextGenerator): Job {
    const p = body.prompt;
    let promptTokens: number[];
    if (typeof p === "string" || (Array.isArray(p) && typeof p[0] === "string")) {
      const text = typeof p === "string" ? p : (p[0] as string);
      promptTokens = g.tokenizer.encode(text, { parseSpecial: true });
    } else {
      promptTokens = Array.isArray(p[0]) ? [...(p[0] as number[])] : [...(p as number[])];
      checkTokens(promptTokens, g.tokenizer.vocabSize, "prompt");
    }
    if (promptTokens.length === 0) {
      throw badRequest("the prompt is empty", "prompt");
    }
    checkContext(promptTokens.length, g);
    return { kind: "text", body, promptTokens };
  }

  /** Admits the job and starts generating; the caller must call `done` when finished. */
  async function begin(job: Job, g: TextGenerator, reply: FastifyReply) {
    const abort = new AbortController();
    // The response closing before it finished means the client went away: cancel at once
    // (the generation frees its sequence and KV cache when it stops).
    const raw = reply.raw;
    const onClose = (): void => {
      if (!raw.writableFinished) {
        abort.abort(new ApiError(499, "invalid_request_error", "client closed the connection"));
      }
    };
    raw.once("close", onClose);
    const release = await admission.acquire(abort.signal).catch((error: unknown) => {
      raw.off("close", onClose);
      throw error;
    });
    inflight.add(abort);
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = AbortSignal.any([abort.signal, timeout]);
    let generation: Generation;
    try {
      generation = g.generate(
        job.promptTokens,
        generateOptions(job.body, job.promptTokens.length, g, signal),
      );
    } catch (error) {
      inflight.delete(abort);
      raw.off("close", onClose);
      release();
      throw error;
    }
    metrics.promptTokens.inc(job.promptTokens.length);
    const done = (): void => {
      inflight.delete(abort);
      raw.off("close", onClose);
      release();
    };
    return { generation, done, abort };
  }

  function record(result: Awaited<Generation["result"]>): void {
    metrics.generatedTokens.inc(result.tokens.length);
    if (result.tokens.length > 0) {
      // Generation starts right after admission: its prompt time is the time to first token.
      metrics.timeToFirstToken.observe(result.timings.promptMs / 1000);
      if (result.tokens.length > 1) {
        metrics.timePerToken.observe(
          result.timings.generationMs / (result.tokens.length - 1) / 1000,
        );
      }
    }
  }

  async function handle(
    job: Job,
    request: FastifyRequest,
    reply: FastifyReply,
    g: TextGenerator,
  ): Promise<unknown> {
    const stream = job.body.stream === true;
    const includeUsage = job.body.stream_options?.include_usage === true;
    const { generation, done, abort } = await begin(job, g, reply);
    const responseId = id(job.kind === "chat" ? "chatcmpl" : "cmpl");
    const object = job.kind === "chat" ? "chat.completion" : "text_completion";
    const base = {
      id: responseId,
      created: Math.floor(Date.now() / 1000),
      model: alias,
      system_fingerprint: FINGERPRINT,
    };
    if (!stream) {
      try {
        const result = await generation.result;
        record(result);
        const finish = openAiFinish(result.finishReason);
        const usage = {
          prompt_tokens: job.promptTokens.length,
          completion_tokens: result.tokens.length,
          total_tokens: job.promptTokens.length + result.tokens.length,
        };
        return {
          ...base,
          object,
          choices: [
            job.kind === "chat"
              ? {
                  index: 0,
                  message: { role: "assistant", content: result.text },
                  logprobs: null,
                  finish_reason: finish,
                }
              : { index: 0, text: result.text, logprobs: null, finish_reason: finish },
          ],
          usage,
        };
      } finally {
        done();
      }
    }
    // ---- SSE: data: {chunk}\n\n … data: [DONE]\n\n ----
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    const chunkObject = job.kind === "chat" ? "chat.completion.chunk" : "text_completion";
    const send = (payload: unknown): void => {
      if (!res.writableEnded && !res.destroyed) {
        res.write(`data: ${JSON.stringify(payload)}\n\n`);
      }
    };
    const choice = (content: string | null, finish: string | null, role = false) =>
      job.kind === "chat"
        ? {
            index: 0,
            delta: finish !== null ? {} : role ? { role: "assistant", content: "" } : { content },
            logprobs: null,
            finish_reason: finish,
          }
        : { index: 0, text: content ?? "", logprobs: null, finish_reason: finish };
    try {
      if (job.kind === "chat") {
        send({ ...base, object: chunkObject, choices: [choice(null, null, true)] });
      }
      for await (const piece of generation) {
        send({ ...base, object: chunkObject, choices: [choice(piece, null)] });
      }
      const result = await generation.result;
      record(result);
      send({
        ...base,
        object: chunkObject,
        choices: [choice(null, openAiFinish(result.finishReason))],
      });
      if (includeUsage) {
        send({
          ...base,
          object: chunkObject,
          choices: [],
          usage: {
            prompt_tokens: job.promptTokens.length,
            completion_tokens: result.tokens.length,
            total_tokens: job.promptTokens.length + result.tokens.length,
          },
        });
      }
      if (!res.writableEnded && !res.destroyed) {
        res.end("data: [DONE]\n\n");
      }
      metrics.requests.inc({
        route: request.routeOptions.url ?? "unknown",
        status: abort.signal.aborted ? "499" : "200",
      });
    } catch (error) {
      // The headers are sent: report the failure in the stream, then end it.
      send({
        error: {
          message: (error as Error).message,
          type: "server_error",
          param: null,
          code: "generation_failed",
        },
      });
      res.end();
      metrics.requests.inc({ route: request.routeOptions.url ?? "unknown", status: "500" });
      log(`generation failed: ${(error as Error).stack ?? error}`);
    } finally {
      done();
    }
    return reply; // hijacked: the response was written above
  }

  app.post("/v1/chat/completions", async (request, reply) => {
    const body = parseChat(request.body);
    const g = loaded();
    return handle(chatJob(body, g), request, reply, g);
  });

  app.post("/v1/completions", async (request, reply) => {
    const body = parseCompletion(request.body);
    const g = loaded();
    return handle(completionJob(body, g), request, reply, g);
  });

  // ---- listen first (health answers 503 while loading), then load ----
  const address = await app.listen({
    host: options.host ?? "127.0.0.1",
    port: options.port ?? 8080,
  });
  log(`listening on ${address}`);
  const ready = (async () => {
    const started = performance.now();
    generator = await TextGenerator.load(options.model, {
      ...(options.backend === undefined ? {} : { backend: options.backend }),
      ...(options.contextLength === undefined ? {} : { contextLength: options.contextLength }),
      ...(options.threads === undefined ? {} : { threads: options.threads }),
      ...(options.backendOptions === undefined ? {} : { backendOptions: options.backendOptions }),
      onLog: log,
    });
    log(
      `model ${alias} loaded in ${(performance.now() - started).toFixed(0)} ms on the ${generator.model.backendName} backend; ${parallel} slots, context ${generator.model.contextLength}`,
    );
  })();
  ready.catch((error: unknown) => log(`could not load the model: ${(error as Error).message}`));

  return {
    app,
    url: address,
    ready,
    async close({ graceMs = 10_000 } = {}) {
      if (closing) {
        return;
      }
      closing = true;
      admission.close();
      const stopped = app.close(); // stops accepting; resolves when in-flight responses end
      const timer = setTimeout(() => {
        for (const a of inflight) {
          a.abort(new ApiError(503, "unavailable_error", "the server is shutting down"));
        }
      }, graceMs);
      try {
        await stopped;
      } finally {
        clearTimeout(timer);
        await ready.catch(() => {});
        await generator?.dispose();
      }
    },
  };
}
