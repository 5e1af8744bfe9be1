/**
 * Tenants: who a request's API key belongs to and what that key may still do.
 *
 * Keys live in a JSON file as SHA-256 digests (never in clear), each with a tenant name and
 * optional limits per minute. A request's key is hashed and compared with every digest in
 * constant time. Limits are token buckets refilled continuously (a full minute's allowance at
 * most, so a quiet tenant can burst to its per-minute figure and no further):
 *
 * - `requests_per_minute`: each generation request takes one;
 * - `tokens_per_minute`: the prompt's tokens are taken when the request starts (it waits for
 *   none), the generated ones when it ends; the balance may go below zero, and then the tenant's
 *   next request waits until it is refilled;
 * - `concurrent_streams`: generation requests of the tenant running or queued at once.
 *
 * Over a limit: 429 with Retry-After (seconds until the bucket holds enough). Reloading the file
 * (SIGHUP) keeps the buckets and running requests of tenants that keep their name: nothing is
 * dropped and no quota is reset by a reload.
 */

import { createHash, timingSafeEqual } from "node:crypto";
import * as fs from "node:fs";
import { BitnetError } from "@bitnet-ts/errors";
import { z } from "zod";
import { ApiError } from "./errors";

/** What a tenants file may set per tenant (absent = no limit). */
export interface TenantLimits {
  readonly requestsPerMinute?: number;
  readonly tokensPerMinute?: number;
  readonly concurrentStreams?: number;
}

export interface TenantConfig {
  readonly name: string;
  /** SHA-256 of the key, 32 bytes. */
  readonly keyDigest: Buffer;
  readonly limits: TenantLimits;
}

/** A tenants file that cannot be used, with where and why. */
export class TenantsFileError extends BitnetError {
  constructor(message: string) {
    super("SERVER_TENANTS_FILE", message);
  }
}

const limit = z.number().int().positive().max(1e12);
const fileSchema = z
  .object({
    tenants: z.array(
      z
        .object({
          name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, "1-64 letters, digits, '_', '.' or '-'"),
          key_sha256: z
            .string()
            .regex(/^[0-9a-fA-F]{64}$/, "64 hex digits (the SHA-256 of the key)"),
          limits: z
            .object({
              requests_per_minute: limit.optional(),
              tokens_per_minute: limit.optional(),
              concurrent_streams: limit.optional(),
            })
            .strict()
            .optional(),
        })
        .strict(),
    ),
  })
  .strict();

/** The SHA-256 of a key in hex, as a tenants file stores it. */
export function hashKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

/** Parses a tenants file's text; throws TenantsFileError naming the file and the field. */
export function parseTenants(text: string, file: string): TenantConfig[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new TenantsFileError(
      `could not read tenants file ${file} - not JSON: ${(error as Error).message}.`,
    );
  }
  const parsed = fileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new TenantsFileError(
      `could not read tenants file ${file} - ${issue.path.join(".") || "(top level)"}: ${issue.message}.`,
    );
  }
  const names = new Set<string>();
  const digests = new Set<string>();
  return parsed.data.tenants.map((t, i) => {
    const digest = t.key_sha256.toLowerCase();
    if (names.has(t.name)) {
      throw new TenantsFileError(
        `could not read tenants file ${file} - tenants.${i}.name: "${t.name}" is used twice.`,
      );
    }
    if (digests.has(digest)) {
      throw new TenantsFileError(
        `could not read tenants file ${file} - tenants.${i}.key_sha256: the same key is given to two tenants.`,
      );
    }
    names.add(t.name);
    digests.add(digest);
    const l = t.limits ?? {};
    return {
      name: t.name,
      keyDigest: Buffer.from(digest, "hex"),
      limits: {
        ...(l.requests_per_minute === undefined
          ? {}
          : { requestsPerMinute: l.requests_per_minute }),
        ...(l.tokens_per_minute === undefined ? {} : { tokensPerMinute: l.tokens_per_minute }),
        ...(l.concurrent_streams === undefined ? {} : { concurrentStreams: l.concurrent_streams }),
      },
    };
  });
}

/** Reads and parses a tenants file. */
export function readTenantsFile(file: string): TenantConfig[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (error) {
    throw new TenantsFileError(
      `could not read tenants file ${file} - ${(error as Error).message}.`,
    );
  }
  return parseTenants(text, file);
}

/** A per-minute allowance refilled continuously. */
class Bucket {
  readonly #perMinute: number;
  #level: number;
  #at: number;
  readonly #now: () => number;

  constructor(perMinute: number, now: () => number) {
    this.#perMinute = perMinute;
    this.#level = perMinute;
    this.#now = now;
    this.#at = now();
  }

  get capacity(): number {
    return this.#perMinute;
  }

  level(): number {
    const now = this.#now();
    this.#level = Math.min(
      this.#perMinute,
      this.#level + ((now - this.#at) * this.#perMinute) / 60_000,
    );
    this.#at = now;
    return this.#level;
  }

  /** Seconds until the bucket holds `amount` (0 when it does). */
  waitSeconds(amount: number): number {
    const missing = amount - this.level();
    return missing <= 0 ? 0 : Math.ceil((missing * 60) / this.#perMinute);
  }

  take(amount: number): void {
    this.level();
    this.#level -= amount;
  }
}

/** Which limit refused a request (a metrics label). */
export type LimitName = "requests_per_minute" | "tokens_per_minute" | "concurrent_streams";

/** One tenant's running state. */
export class Tenant {
  readonly name: string;
  #config: TenantConfig;
  #requests: Bucket | undefined;
  #tokens: Bucket | undefined;
  #active = 0;
  readonly #now: () => number;

  constructor(config: TenantConfig, now: () => number) {
    this.name = config.name;
    this.#now = now;
    this.#config = config;
    this.#apply(config, undefined);
  }

  get config(): TenantConfig {
    return this.#config;
  }

  /** Generation requests of this tenant running or waiting now. */
  get active(): number {
    return this.#active;
  }

  /** Takes a new configuration; buckets whose limit did not change keep their level. */
  update(config: TenantConfig): void {
    const old = this.#config;
    this.#config = config;
    this.#apply(config, old);
  }

  #apply(config: TenantConfig, old: TenantConfig | undefined): void {
    const l = config.limits;
    if (old === undefined || old.limits.requestsPerMinute !== l.requestsPerMinute) {
      this.#requests =
        l.requestsPerMinute === undefined ? undefined : new Bucket(l.requestsPerMinute, this.#now);
    }
    if (old === undefined || old.limits.tokensPerMinute !== l.tokensPerMinute) {
      this.#tokens =
        l.tokensPerMinute === undefined ? undefined : new Bucket(l.tokensPerMinute, this.#now);
    }
  }

  /**
   * Starts a generation request of `promptTokens` tokens, or throws the 429 of the first limit
   * it is over. The returned function ends it (once), charging the generated tokens.
   */
  start(promptTokens: number): { end: (generatedTokens: number) => void } {
    const l = this.#config.limits;
    if (l.concurrentStreams !== undefined && this.#active >= l.concurrentStreams) {
      throw overLimit(
        this.name,
        "concurrent_streams",
        `${this.#active} requests of this key are running or queued, its concurrent_streams limit`,
        1,
      );
    }
    if (this.#requests !== undefined) {
      const wait = this.#requests.waitSeconds(1);
      if (wait > 0) {
        throw overLimit(
          this.name,
          "requests_per_minute",
          `this key may send ${this.#requests.capacity} requests per minute`,
          wait,
        );
      }
    }
    if (this.#tokens !== undefined) {
      if (promptTokens > this.#tokens.capacity) {
        throw overLimit(
          this.name,
          "tokens_per_minute",
          `the prompt alone has ${promptTokens} tokens and this key may use ${this.#tokens.capacity} per minute`,
          undefined,
        );
      }
      const wait = this.#tokens.waitSeconds(Math.max(promptTokens, 1));
      if (wait > 0) {
        throw overLimit(
          this.name,
          "tokens_per_minute",
          `this key may use ${this.#tokens.capacity} tokens per minute (prompt and generated) and has ${Math.max(0, Math.floor(this.#tokens.level()))} left; this prompt needs ${promptTokens}`,
          wait,
        );
      }
    }
    this.#requests?.take(1);
    this.#tokens?.take(promptTokens);
    this.#active++;
    let ended = false;
    return {
      end: (generatedTokens) => {
        if (ended) {
          return;
        }
        ended = true;
        this.#active--;
        // Charged to the bucket of the moment: a reload that changed the limit charges the new one.
        this.#tokens?.take(generatedTokens);
      },
    };
  }
}

function overLimit(
  tenant: string,
  limit: LimitName,
  why: string,
  retryAfter: number | undefined,
): ApiError {
  return new ApiError(
    429,
    "rate_limit_error",
    `rate limit reached for key "${tenant}": ${why}; ${retryAfter === undefined ? "this request can never fit: shorten it or ask for a higher limit" : `retry in ${retryAfter} s`}`,
    {
      code: "rate_limit_exceeded",
      param: null,
      extra: { limit },
      ...(retryAfter === undefined ? {} : { headers: { "retry-after": String(retryAfter) } }),
    },
  );
}

/** Every tenant; looked up by key. */
export class Tenants {
  #tenants = new Map<string, Tenant>();
  readonly #now: () => number;

  constructor(configs: readonly TenantConfig[], now: () => number = () => performance.now()) {
    this.#now = now;
    this.replace(configs);
  }

  get size(): number {
    return this.#tenants.size;
  }

  names(): string[] {
    return [...this.#tenants.keys()];
  }

  get(name: string): Tenant | undefined {
    return this.#tenants.get(name);
  }

  /**
   * Takes a new list (a reload): tenants keeping their name keep their state (buckets, running
   * requests, which end normally); tenants no longer listed lose their key at once.
   */
  replace(configs: readonly TenantConfig[]): void {
    const next = new Map<string, Tenant>();
    for (const config of configs) {
      const existing = this.#tenants.get(config.name);
      if (existing === undefined) {
        next.set(config.name, new Tenant(config, this.#now));
      } else {
        existing.update(config);
        next.set(config.name, existing);
      }
    }
    this.#tenants = next;
  }

  /** The tenant whose key this is. Every digest is compared (constant time in which matched). */
  identify(key: string): Tenant | undefined {
    const digest = createHash("sha256").update(key).digest();
    let found: Tenant | undefined;
    for (const tenant of this.#tenants.values()) {
      if (timingSafeEqual(digest, tenant.config.keyDigest) && found === undefined) {
        found = tenant;
      }
    }
    return found;
  }
}
