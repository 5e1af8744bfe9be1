/**
 * The OpenAI-compatible server. One TextGenerator serves every request: admitted generations
 * decode together (one batched backend step per token for all of them), new requests join
 * between steps. Admission (admission.ts) lets a request in while fewer than `parallel` run and
 * its KV cache fits the model's budget; a bounded queue waits behind them and anything beyond it
 * is refused with 503 + Retry-After. The server listens before the model is loaded (503 until
 * then; lifecycle.ts). A client that disconnects cancels its generation and frees its sequence
 * at once. `close()` stops accepting, lets in-flight work finish within a grace period, then
 * cancels the rest.
 *
 * Modules: auth.ts (API keys), error-handler.ts (errors → OpenAI's shape), openai.ts (request →
 * prompt and options), responses.ts (results → OpenAI objects), sse.ts (streams), routes/*.ts,
 * lifecycle.ts (load, health, shutdown), admission.ts, metrics.ts.
 */
import * as path from "node:path";
import { registerBackend } from "@bitnet-ts/engine-core";
import Fastify from "fastify";
import { Admission } from "./admission";
import { installAuth } from "./auth";
import type { ServerContext } from "./context";
import { installErrorHandlers } from "./error-handler";
import { ServerListenError } from "./errors";
import { Lifecycle, loadGenerator } from "./lifecycle";
import { createMetrics } from "./metrics";
import type { BitnetServer, ServerOptions } from "./options";
import { registerGenerationRoutes } from "./routes/generate";
import { registerInfoRoutes } from "./routes/info";
import { registerTokenizeRoutes } from "./routes/tokenize";
import { hashKey, readTenantsFile, type TenantConfig, Tenants } from "./tenants";
import { UsageLog } from "./usage-log";
import { isWebUiRequest, registerWebUi, webUiRoot } from "./webui";

export type { BitnetServer, ServerOptions } from "./options";

// The native CPU kernels ship with the server; engine-core loads them on demand.
registerBackend("cpu", () => import("@bitnet-ts/kernels-cpu"));
// WebGPU (Metal, Vulkan, Direct3D 12 through Dawn): `--backend webgpu`, or "auto" on macOS.
registerBackend("webgpu", () => import("@bitnet-ts/kernels-webgpu"));
// CUDA (NVIDIA GPUs): `--backend cuda`, and first in "auto" where a GPU and its driver are found.
registerBackend("cuda", () => import("@bitnet-ts/kernels-cuda"));

/** Plain API keys as tenants without limits: "default" for one key, "key-1"… for several. */
function plainKeyTenants(keys: readonly string[]): TenantConfig[] {
  return [...new Set(keys)].map((key, i, all) => ({
    name: all.length === 1 ? "default" : `key-${i + 1}`,
    keyDigest: Buffer.from(hashKey(key), "hex"),
    limits: {},
  }));
}

/** Why the server could not listen, in words (ServerListenError), from the socket's error. */
function listenError(error: unknown, host: string, port: number): Error {
  const code = (error as NodeJS.ErrnoException)?.code;
  const at = `${host}:${port}`;
  switch (code) {
    case "EADDRINUSE":
      return new ServerListenError(
        `could not listen on ${at} - the port is in use; choose another with --port (--port 0 takes any free one).`,
      );
    case "EACCES":
      return new ServerListenError(
        `could not listen on ${at} - permission denied (ports below 1024 need privileges).`,
      );
    case "ENOTFOUND":
    case "EAI_AGAIN":
    case "EAI_NONAME":
      return new ServerListenError(
        `could not listen on ${at} - the host name ${host} does not resolve; give an address such as 127.0.0.1 or 0.0.0.0.`,
      );
    case "EADDRNOTAVAIL":
      return new ServerListenError(
        `could not listen on ${at} - ${host} is not an address of this machine.`,
      );
    default:
      return error instanceof Error ? error : new Error(String(error));
  }
}

export async function startServer(options: ServerOptions): Promise<BitnetServer> {
  const log = options.onLog ?? (() => {});
  const plain = plainKeyTenants(options.apiKeys ?? []);
  const fromFile = () =>
    options.tenantsFile === undefined ? [] : readTenantsFile(options.tenantsFile);
  const tenants = new Tenants([...plain, ...fromFile()]);
  const usage = options.usageLog === undefined ? undefined : new UsageLog(options.usageLog, log);
  const alias = options.alias ?? path.basename(options.model).replace(/\.gguf$/i, "");
  const parallel = options.parallel ?? 4;
  const bodyLimit = options.bodyLimit ?? 1 << 20;
  const lifecycle = new Lifecycle();
  // What requests may reserve: the KV budget less what the prompt cache may hold.
  const capacity = () => {
    const g = lifecycle.generator;
    if (g === undefined) {
      return undefined;
    }
    const c = g.model.capacity();
    return { ...c, kvBudgetBytes: c.kvBudgetBytes - (g.promptCache?.maxBytes ?? 0) };
  };
  const admission = new Admission({
    parallel,
    maxQueue: options.maxQueue ?? 64,
    // Requests are admitted only once the model is loaded (routes call lifecycle.loaded() first).
    capacity: () => capacity()!,
  });
  const metrics = createMetrics({
    queued: () => admission.queued,
    busy: () => admission.busy,
    sequences: () => lifecycle.generator?.model.sequenceCount ?? 0,
    slots: parallel,
    promptCache: () => lifecycle.generator?.promptCache?.stats(),
    tenants,
    kv: () => {
      const c = capacity();
      return {
        reserved: admission.reservedBytes,
        budget: c?.kvBudgetBytes ?? 0,
        used: c?.kvUsedBytes ?? 0,
      };
    },
  });
  const ctx: ServerContext = {
    alias,
    created: Math.floor(Date.now() / 1000),
    timeoutMs: (options.timeoutSeconds ?? 600) * 1000,
    admission,
    lifecycle,
    metrics,
    usage,
    log,
  };

  const app = Fastify({
    bodyLimit,
    // Slow clients cannot hold a connection forever while sending a request.
    requestTimeout: 60_000,
    connectionTimeout: 0,
    keepAliveTimeout: 5_000,
    logger: false,
    return503OnClosing: true,
  });
  // Request bodies are JSON only (fastify also parses text/plain by default).
  app.removeContentTypeParser("text/plain");
  installErrorHandlers(app, { bodyLimit, log });
  app.addHook("onResponse", async (request, reply) => {
    metrics.requests.inc({
      route: request.routeOptions.url ?? "unknown",
      status: String(reply.statusCode),
    });
  });
  const webUi = options.webUi === false ? { reason: "turned off (--no-webui)" } : webUiRoot();
  installAuth(app, tenants, "root" in webUi ? isWebUiRequest : undefined);
  registerInfoRoutes(app, ctx);
  registerTokenizeRoutes(app, ctx);
  registerGenerationRoutes(app, ctx);
  if ("root" in webUi) {
    await registerWebUi(app, webUi.root);
  }

  // Listen first (health answers 503 while loading), then load.
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? 8080;
  const address = await app.listen({ host, port }).catch(async (error: unknown) => {
    await app.close().catch(() => {});
    throw listenError(error, host, port);
  });
  log(`listening on ${address}; loading the model (/health answers 503 until it is ready)`);
  log("root" in webUi ? `chat page at ${address}/` : `no chat page: ${webUi.reason}`);
  const ready = lifecycle.load(() => loadGenerator(options, { alias, parallel }, log));
  ready.catch((error: unknown) => log(`could not load the model: ${(error as Error).message}`));

  return {
    app,
    url: address,
    ready,
    reloadTenants: () => {
      if (options.tenantsFile === undefined) {
        return { tenants: tenants.size };
      }
      tenants.replace([...plain, ...fromFile()]);
      log(`tenants: ${tenants.size} keys in force (${tenants.names().join(", ")})`);
      return { tenants: tenants.size };
    },
    close: async ({ graceMs = 10_000 } = {}) => {
      await lifecycle.close(app, admission, graceMs);
      await usage?.close();
    },
  };
}
