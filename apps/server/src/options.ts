/** What startServer takes and returns. */
import type { BackendName, BackendOptions } from "@bitnet-ts/engine-core";
import type { FastifyInstance } from "fastify";

export interface ServerOptions {
  /** GGUF model to serve. */
  readonly model: string;
  /** Name reported in /v1/models and responses (default: the file name without .gguf). */
  readonly alias?: string;
  readonly host?: string;
  readonly port?: number;
  /**
   * Requests that generate at once at most, batched together (default 4). Fewer run when their
   * KV cache would not fit the model's budget (see admission.ts).
   */
  readonly parallel?: number;
  /**
   * KV-cache bytes kept for later prompts that share a prefix with finished ones (a system
   * prompt, a chat's earlier turns; see PromptCache in @bitnet-ts/generation). Default 256 MiB,
   * at most half the model's KV budget; 0 keeps nothing. Requests opt out with
   * `"cache_prompt": false`.
   */
  readonly cacheBytes?: number;
  /**
   * Speculative decoding for every request: "lookup" (prompt lookup) or a draft model's GGUF
   * with the same vocabulary. Replies are the model's either way (greedy: identical).
   */
  readonly draft?: string;
  /** Most tokens drafted per step (default 8 for lookup, 6 for a draft model). */
  readonly draftMax?: number;
  /** Requests that may wait for admission before new ones get 503 (default 64). */
  readonly maxQueue?: number;
  readonly contextLength?: number;
  /** Threads of the CPU backend (shorthand for `backendOptions.cpu.threads`). */
  readonly threads?: number;
  /** A backend name: "auto" (default), "cpu", "reference", or any registered backend. */
  readonly backend?: BackendName;
  /** Options per backend, e.g. `{ cpu: { mmap: false } }`. */
  readonly backendOptions?: BackendOptions;
  /** Accepted API keys (Authorization: Bearer KEY or X-Api-Key); none = no authentication. */
  readonly apiKeys?: readonly string[];
  /**
   * A tenants file: API keys stored as SHA-256 digests, each with a tenant name and optional
   * limits (requests and tokens per minute, concurrent streams); see tenants.ts. Read at start
   * and again by `reloadTenants()` (`bitnet serve` does on SIGHUP).
   */
  readonly tenantsFile?: string;
  /** Append one JSON line per generation request (tenant, tokens, status, time) to this file. */
  readonly usageLog?: string;
  /** Longest a request may generate, in seconds (default 600); then it ends with finish_reason "length". */
  readonly timeoutSeconds?: number;
  /** Largest request body in bytes (default 1 MiB). */
  readonly bodyLimit?: number;
  /** Serve the chat page at / (default true, when @bitnet-ts/web is built). */
  readonly webUi?: boolean;
  readonly onLog?: (line: string) => void;
}

export interface BitnetServer {
  readonly app: FastifyInstance;
  /** http://host:port once listening. */
  readonly url: string;
  /** Resolves when the model is loaded and /health says ok; rejects if loading failed. */
  readonly ready: Promise<void>;
  /**
   * Reads the tenants file again: new keys work at once, removed ones stop working, running
   * requests are not touched and tenants that stay keep their quotas' state. Throws
   * TenantsFileError (keeping the keys in force) when the file cannot be used.
   */
  reloadTenants(): { readonly tenants: number };
  /** Stops accepting, finishes in-flight requests within `graceMs` (default 10 s), cancels the rest. */
  close(options?: { graceMs?: number }): Promise<void>;
}
