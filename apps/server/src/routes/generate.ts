/**
 * POST /v1/chat/completions and /v1/completions: build the job, wait for admission, generate
 * (batched with every other running request), answer whole or as a stream. A client that
 * disconnects cancels its generation at once; admission ends when the generation does.
 */
import type { Generation, GenerationResult, TextGenerator } from "@bitnet-ts/generation";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { tenantOf } from "../auth";
import type { ServerContext } from "../context";
import { ApiError } from "../errors";
import { chatJob, completionJob, type Job } from "../openai";
import { completionResponse, responseBase } from "../responses";
import { parseChat, parseCompletion } from "../schemas";
import { streamGeneration } from "../sse";

interface Started {
  readonly generation: Generation;
  readonly abort: AbortController;
  /** Ends the request's admission and tracking (call once the generation is over). */
  readonly done: () => void;
}

/** Admits the job and starts generating; the caller must call `done` when finished. */
async function begin(
  ctx: ServerContext,
  job: Job,
  g: TextGenerator,
  reply: FastifyReply,
): Promise<Started> {
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
  const tokens = job.promptTokens.length + job.options.maxTokens;
  const release = await ctx.admission.acquire(tokens, abort.signal).catch((error: unknown) => {
    raw.off("close", onClose);
    throw error;
  });
  const untrack = ctx.lifecycle.track(abort);
  const done = (): void => {
    untrack();
    raw.off("close", onClose);
    release();
  };
  const signal = AbortSignal.any([abort.signal, AbortSignal.timeout(ctx.timeoutMs)]);
  let generation: Generation;
  try {
    const draft = ctx.lifecycle.drafter;
    generation = g.generate(job.promptTokens, {
      ...job.options,
      signal,
      ...(draft === undefined ? {} : { draft }),
    });
  } catch (error) {
    done();
    throw error;
  }
  ctx.metrics.promptTokens.inc(job.promptTokens.length);
  return { generation, done, abort };
}

function record(ctx: ServerContext, result: GenerationResult): void {
  ctx.metrics.generatedTokens.inc(result.tokens.length);
  if (result.tokens.length > 0) {
    // Generation starts right after admission: its prompt time is the time to first token.
    ctx.metrics.timeToFirstToken.observe(result.timings.promptMs / 1000);
    if (result.tokens.length > 1) {
      ctx.metrics.timePerToken.observe(
        result.timings.generationMs / (result.tokens.length - 1) / 1000,
      );
    }
  }
}

/**
 * One generation request: the tenant's limits (429 before anything is queued), admission, the
 * generation, then the tenant's usage (metrics, usage log, tokens charged) however it ended.
 */
async function handle(
  ctx: ServerContext,
  job: Job,
  g: TextGenerator,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<unknown> {
  const tenant = tenantOf(request);
  const tenantName = tenant?.name ?? "anonymous";
  const route = request.routeOptions.url ?? "unknown";
  const started = performance.now();
  let status = 500;
  let result: GenerationResult | undefined;
  let limit: string | undefined;
  const account = (): void => {
    ctx.metrics.tenantRequests.inc({ tenant: tenantName, status: String(status) });
    if (limit === undefined) {
      ctx.metrics.tenantPromptTokens.inc({ tenant: tenantName }, job.promptTokens.length);
      ctx.metrics.tenantGeneratedTokens.inc({ tenant: tenantName }, result?.tokens.length ?? 0);
    } else {
      ctx.metrics.tenantRateLimited.inc({ tenant: tenantName, limit });
    }
    ctx.usage?.append({
      time: new Date().toISOString(),
      tenant: tenantName,
      route,
      model: ctx.alias,
      status,
      prompt_tokens: limit === undefined ? job.promptTokens.length : 0,
      cached_tokens: result?.cachedTokens ?? 0,
      completion_tokens: result?.tokens.length ?? 0,
      finish_reason: result?.finishReason ?? null,
      duration_ms: Math.round(performance.now() - started),
      ...(limit === undefined ? {} : { limit }),
    });
  };
  let lease: ReturnType<NonNullable<typeof tenant>["start"]> | undefined;
  try {
    lease = tenant?.start(job.promptTokens.length);
  } catch (error) {
    if (error instanceof ApiError) {
      status = error.status;
      limit = String(error.extra["limit"] ?? "unknown");
    }
    account();
    throw error;
  }
  try {
    return await generate(ctx, job, g, request, reply, (outcome, r) => {
      status = outcome;
      result = r;
    });
  } catch (error) {
    status = error instanceof ApiError ? error.status : 500;
    throw error;
  } finally {
    lease?.end(result?.tokens.length ?? 0);
    account();
  }
}

async function generate(
  ctx: ServerContext,
  job: Job,
  g: TextGenerator,
  request: FastifyRequest,
  reply: FastifyReply,
  ended: (status: number, result: GenerationResult | undefined) => void,
): Promise<unknown> {
  const { generation, done, abort } = await begin(ctx, job, g, reply);
  const base = responseBase(job, ctx.alias);
  if (job.body.stream !== true) {
    try {
      const result = await generation.result;
      record(ctx, result);
      ended(200, result);
      return completionResponse(job, base, result);
    } finally {
      done();
    }
  }
  let streamed: GenerationResult | undefined;
  try {
    const { outcome, error } = await streamGeneration(reply, job, base, generation, {
      aborted: () => abort.signal.aborted,
      onResult: (result) => {
        streamed = result;
        record(ctx, result);
      },
    });
    ended(Number(outcome), streamed);
    // A hijacked reply skips fastify's onResponse hook: count the request here.
    ctx.metrics.requests.inc({ route: request.routeOptions.url ?? "unknown", status: outcome });
    if (error !== undefined) {
      ctx.log(`generation failed: ${(error as Error).stack ?? error}`);
    }
  } finally {
    done();
  }
  return reply; // hijacked: the response was written
}

export function registerGenerationRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.post("/v1/chat/completions", async (request, reply) => {
    const body = parseChat(request.body);
    const g = ctx.lifecycle.loaded();
    return handle(ctx, chatJob(body, g), g, request, reply);
  });

  app.post("/v1/completions", async (request, reply) => {
    const body = parseCompletion(request.body);
    const g = ctx.lifecycle.loaded();
    return handle(ctx, completionJob(body, g), g, request, reply);
  });
}
