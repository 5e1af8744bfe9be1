/** `bitnet serve`: the OpenAI-compatible server, until SIGTERM or SIGINT (then a graceful stop). */
import * as fs from "node:fs";
import { startServer } from "@bitnet-ts/server";
import { defaultModelPath } from "../default-model";
import { CliInputError } from "../errors";
import { backendField, backendOptionsOf, type ModelOptions } from "../options";
import type { CliIo } from "../program";
import type { DraftOptions } from "./load";

export interface ServeOptions extends ModelOptions, DraftOptions {
  host?: string;
  port?: number;
  parallel?: number;
  cacheBytes?: number;
  apiKey?: string;
  apiKeyFile?: string;
  tenants?: string;
  usageLog?: string;
  maxQueue?: number;
  timeout?: number;
  alias?: string;
  grace?: number;
  /** false with --no-webui. */
  webui?: boolean;
}

function apiKeys(options: ServeOptions): string[] {
  const keys: string[] = [];
  if (options.apiKey !== undefined) {
    keys.push(...options.apiKey.split(","));
  }
  if (options.apiKeyFile !== undefined) {
    let text: string;
    try {
      text = fs.readFileSync(options.apiKeyFile, "utf8");
    } catch (error) {
      throw new CliInputError(
        `could not read --api-key-file ${options.apiKeyFile} - ${(error as Error).message}.`,
      );
    }
    keys.push(...text.split(/\r?\n/));
  }
  const clean = keys.map((k) => k.trim()).filter((k) => k.length > 0);
  if ((options.apiKey !== undefined || options.apiKeyFile !== undefined) && clean.length === 0) {
    throw new CliInputError("could not start - the API key options give no key.");
  }
  return clean;
}

export async function runServe(options: ServeOptions, io: CliIo): Promise<void> {
  if (options.model !== undefined && !fs.existsSync(options.model)) {
    // Before listening: a server that announces itself and then exits helps nobody.
    throw new CliInputError(`could not serve - the model ${options.model} does not exist.`);
  }
  const model = options.model ?? (await defaultModelPath((line) => io.stderr(`${line}\n`)));
  const log = (line: string): void => io.stderr(`bitnet serve: ${line}\n`);
  const server = await startServer({
    model,
    ...(options.alias === undefined ? {} : { alias: options.alias }),
    host: options.host ?? "127.0.0.1",
    port: options.port ?? 8080,
    ...(options.parallel === undefined ? {} : { parallel: options.parallel }),
    ...(options.maxQueue === undefined ? {} : { maxQueue: options.maxQueue }),
    ...(options.cacheBytes === undefined ? {} : { cacheBytes: options.cacheBytes }),
    ...(options.draft === undefined ? {} : { draft: options.draft }),
    ...(options.draftMax === undefined ? {} : { draftMax: options.draftMax }),
    ...(options.ctxSize === undefined ? {} : { contextLength: options.ctxSize }),
    ...backendField(options),
    backendOptions: backendOptionsOf(options),
    apiKeys: apiKeys(options),
    ...(options.tenants === undefined ? {} : { tenantsFile: options.tenants }),
    ...(options.usageLog === undefined ? {} : { usageLog: options.usageLog }),
    ...(options.timeout === undefined ? {} : { timeoutSeconds: options.timeout }),
    ...(options.webui === false ? { webUi: false } : {}),
    onLog: log,
  });
  await new Promise<void>((resolve, reject) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) {
        return;
      }
      stopping = true;
      log(`${signal}: no new requests; finishing in-flight ones (up to ${options.grace ?? 10} s)`);
      server.close({ graceMs: (options.grace ?? 10) * 1000 }).then(() => {
        log("stopped");
        resolve();
      }, reject);
    };
    // SIGUSR2 logs memory use, after a full garbage collection when Node runs with --expose-gc
    // (so that soak tests and operators compare RSS without the collector's sawtooth).
    process.on("SIGUSR2", () => {
      const gc = (globalThis as { gc?: () => void }).gc;
      gc?.();
      const m = process.memoryUsage();
      const mib = (b: number) => (b / 2 ** 20).toFixed(1);
      log(
        `memory${gc === undefined ? "" : " after a full GC"}: rss ${mib(m.rss)} MiB, JS heap ${mib(m.heapUsed)} of ${mib(m.heapTotal)} MiB, external ${mib(m.external)} MiB`,
      );
    });
    // SIGHUP re-reads the tenants file; a file that cannot be used keeps the keys in force.
    process.on("SIGHUP", () => {
      if (options.tenants === undefined) {
        log("SIGHUP: no --tenants file to reload");
        return;
      }
      try {
        server.reloadTenants();
      } catch (error) {
        log(`SIGHUP: ${(error as Error).message} Keeping the keys in force.`);
      }
    });
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
    server.ready.catch((error: unknown) => {
      stopping = true;
      server.close({ graceMs: 0 }).finally(() => reject(error));
    });
  });
}
