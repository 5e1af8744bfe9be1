/** Prometheus metrics (prom-client, on the server's own registry). */
import type { PromptCacheStats } from "@bitnet-ts/generation";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Tenants } from "./tenants";

export interface ServerMetrics {
  readonly registry: Registry;
  readonly requests: Counter<"route" | "status">;
  readonly promptTokens: Counter;
  readonly generatedTokens: Counter;
  readonly timeToFirstToken: Histogram;
  readonly timePerToken: Histogram;
  /** Per tenant (API key; "anonymous" without keys). */
  readonly tenantRequests: Counter<"tenant" | "status">;
  readonly tenantPromptTokens: Counter<"tenant">;
  readonly tenantGeneratedTokens: Counter<"tenant">;
  readonly tenantRateLimited: Counter<"tenant" | "limit">;
}

export function createMetrics(gauges: {
  queued: () => number;
  busy: () => number;
  sequences: () => number;
  slots: number;
  /** The prompt cache's figures (undefined until loaded, or with no cache). */
  promptCache: () => PromptCacheStats | undefined;
  tenants: Tenants;
  /** KV cache bytes: reserved by admitted requests, the model's budget, held now (0 until loaded). */
  kv: () => { reserved: number; budget: number; used: number };
}): ServerMetrics {
  const registry = new Registry();
  const requests = new Counter({
    name: "bitnet_requests_total",
    help: "HTTP requests by route and status code",
    labelNames: ["route", "status"] as const,
    registers: [registry],
  });
  const promptTokens = new Counter({
    name: "bitnet_prompt_tokens_total",
    help: "Prompt tokens evaluated",
    registers: [registry],
  });
  const generatedTokens = new Counter({
    name: "bitnet_generated_tokens_total",
    help: "Tokens generated",
    registers: [registry],
  });
  const timeToFirstToken = new Histogram({
    name: "bitnet_time_to_first_token_seconds",
    help: "From admission to the first generated token",
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const timePerToken = new Histogram({
    name: "bitnet_time_per_output_token_seconds",
    help: "Mean time per generated token after the first, per request",
    buckets: [0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1],
    registers: [registry],
  });
  new Gauge({
    name: "bitnet_queue_depth",
    help: "Requests waiting for admission (a slot or KV cache room)",
    registers: [registry],
    collect() {
      this.set(gauges.queued());
    },
  });
  new Gauge({
    name: "bitnet_busy_slots",
    help: "Requests generating now",
    registers: [registry],
    collect() {
      this.set(gauges.busy());
    },
  });
  new Gauge({
    name: "bitnet_slots",
    help: "Requests that may generate at once at most (--parallel)",
    registers: [registry],
    collect() {
      this.set(gauges.slots);
    },
  });
  new Gauge({
    name: "bitnet_live_sequences",
    help: "Sequences holding KV cache in the engine",
    registers: [registry],
    collect() {
      this.set(gauges.sequences());
    },
  });
  new Gauge({
    name: "bitnet_kv_reserved_bytes",
    help: "KV cache bytes reserved by admitted requests (min(prompt + max_tokens, context) tokens each)",
    registers: [registry],
    collect() {
      this.set(gauges.kv().reserved);
    },
  });
  new Gauge({
    name: "bitnet_kv_budget_bytes",
    help: "KV cache bytes admitted requests may reserve in all (the model's KV budget less the prompt cache's --cache-bytes)",
    registers: [registry],
    collect() {
      this.set(gauges.kv().budget);
    },
  });
  new Gauge({
    name: "bitnet_kv_used_bytes",
    help: "KV cache bytes the live sequences hold now",
    registers: [registry],
    collect() {
      this.set(gauges.kv().used);
    },
  });
  const cache = (read: (s: PromptCacheStats) => number) =>
    function (this: Gauge | Counter) {
      const stats = gauges.promptCache();
      this.reset();
      if (stats !== undefined) {
        this.inc(read(stats));
      }
    };
  new Gauge({
    name: "bitnet_prompt_cache_bytes",
    help: "KV cache bytes held by the prompt cache (sequences kept for prompts that share a prefix)",
    registers: [registry],
    collect: cache((s) => s.bytes),
  });
  new Gauge({
    name: "bitnet_prompt_cache_entries",
    help: "Sequences held by the prompt cache",
    registers: [registry],
    collect: cache((s) => s.entries),
  });
  new Counter({
    name: "bitnet_prompt_cache_hits_total",
    help: "Requests that started from a cached prefix",
    registers: [registry],
    collect: cache((s) => s.hits),
  });
  new Counter({
    name: "bitnet_prompt_cache_misses_total",
    help: "Requests that evaluated their whole prompt",
    registers: [registry],
    collect: cache((s) => s.misses),
  });
  new Counter({
    name: "bitnet_prompt_cache_reused_tokens_total",
    help: "Prompt tokens not evaluated because their KV cache was reused",
    registers: [registry],
    collect: cache((s) => s.reusedTokens),
  });
  new Counter({
    name: "bitnet_prompt_cache_evictions_total",
    help: "Cached sequences dropped to stay within --cache-bytes",
    registers: [registry],
    collect: cache((s) => s.evictions),
  });
  const tenantRequests = new Counter({
    name: "bitnet_tenant_requests_total",
    help: "Generation requests per tenant (API key) and HTTP status (streams: 200, 499 or 500)",
    labelNames: ["tenant", "status"] as const,
    registers: [registry],
  });
  const tenantPromptTokens = new Counter({
    name: "bitnet_tenant_prompt_tokens_total",
    help: "Prompt tokens per tenant (cached ones included: they count against tokens_per_minute)",
    labelNames: ["tenant"] as const,
    registers: [registry],
  });
  const tenantGeneratedTokens = new Counter({
    name: "bitnet_tenant_generated_tokens_total",
    help: "Generated tokens per tenant",
    labelNames: ["tenant"] as const,
    registers: [registry],
  });
  const tenantRateLimited = new Counter({
    name: "bitnet_tenant_rate_limited_total",
    help: "Requests refused with 429 per tenant and limit",
    labelNames: ["tenant", "limit"] as const,
    registers: [registry],
  });
  new Gauge({
    name: "bitnet_tenant_active_requests",
    help: "Generation requests per tenant running or waiting for admission (concurrent_streams counts these)",
    labelNames: ["tenant"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const name of gauges.tenants.names()) {
        this.set({ tenant: name }, gauges.tenants.get(name)?.active ?? 0);
      }
    },
  });
  return {
    registry,
    requests,
    promptTokens,
    generatedTokens,
    timeToFirstToken,
    timePerToken,
    tenantRequests,
    tenantPromptTokens,
    tenantGeneratedTokens,
    tenantRateLimited,
  };
}
