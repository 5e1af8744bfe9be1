/**
 * Soak: many mixed requests against one `bitnet serve` process — chat and completions, whole
 * and streamed, streams cancelled mid-way, requests abandoned before their answer, bad requests,
 * the light routes — checking that nothing crashes, no answer is a 5xx other than the bounded
 * queue's 503, and memory does not grow: the server's RSS once idle after a warm-up and once
 * idle at the end, each after full garbage collections (SIGUSR2) until it settles, may not grow
 * by more than a tolerance. Without the collection the readings land anywhere on the
 * collector's sawtooth (measured: 252-340 MiB over 5,000 requests on a tiny model, no trend).
 * Readings may also fall over a long run on machines that reclaim cold pages (this VM runs
 * DAMON's kdamond): a fall is reported, only growth fails. Latency percentiles per kind are reported.
 */
import { metric, percentile, type ServeProcess, startServe } from "./serve";

export type RequestKind =
  | "chat"
  | "stream"
  | "stream-cancelled"
  | "abandoned"
  | "bad-request"
  | "light";

export interface SoakOptions {
  readonly model: string;
  readonly requests: number;
  /**
   * Requests before the first RSS reading (default 20%, at least 50): the server's memory
   * settles only after its heap has grown to the load and the prompt cache has filled.
   */
  readonly warmup?: number;
  /** Clients sending at once (default 8). */
  readonly concurrency?: number;
  /** Spread the requests over at least this long (default 0: as fast as the server answers). */
  readonly minDurationMs?: number;
  /** Extra `bitnet serve` flags (default: -c 512 --parallel 4 --max-queue 32 -t 2). */
  readonly serveArgs?: readonly string[];
  readonly onProgress?: (done: number, total: number) => void;
}

export interface KindReport {
  readonly kind: RequestKind;
  readonly count: number;
  /** Answered as expected (2xx, 4xx for bad requests, cancelled cleanly). */
  readonly ok: number;
  readonly status503: number;
  /** Failures: 5xx other than 503, unexpected statuses, broken connections. */
  readonly failures: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

export interface SoakReport {
  readonly requests: number;
  readonly durationMs: number;
  readonly kinds: readonly KindReport[];
  readonly failures: readonly string[];
  readonly crashed: boolean;
  readonly rssAfterWarmup: number;
  readonly rssAtEnd: number;
  /** (end − after warm-up) / after warm-up. */
  readonly rssChange: number;
  /** RSS while running, every tenth of the requests: [requests done, bytes]. */
  readonly rssTrace: readonly (readonly [number, number])[];
}

/** A small deterministic generator, so every run sends the same mix. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const BAD_REQUESTS: { route: string; body: string; type?: string }[] = [
  { route: "/v1/chat/completions", body: "{not json" },
  { route: "/v1/chat/completions", body: JSON.stringify({ messages: "hello" }) },
  { route: "/v1/chat/completions", body: JSON.stringify({ messages: [], max_tokens: 4 }) },
  {
    route: "/v1/completions",
    body: JSON.stringify({ prompt: "x", temperature: 7 }),
  },
  { route: "/v1/completions", body: JSON.stringify({ prompt: [99999999] }) },
  { route: "/v1/completions", body: JSON.stringify({ prompt: "x", n: 3 }) },
  { route: "/v1/completions", body: "prompt=x", type: "text/plain" },
  { route: "/v1/nowhere", body: "{}" },
  { route: "/detokenize", body: JSON.stringify({ tokens: [-1] }) },
];

interface Outcome {
  readonly kind: RequestKind;
  readonly ms: number;
  readonly status: "ok" | "503" | "failure";
  readonly detail?: string;
}

function pickKind(r: number): RequestKind {
  if (r < 0.35) {
    return "chat";
  }
  if (r < 0.65) {
    return "stream";
  }
  if (r < 0.75) {
    return "stream-cancelled";
  }
  if (r < 0.8) {
    return "abandoned";
  }
  if (r < 0.9) {
    return "bad-request";
  }
  return "light";
}

async function readAll(response: Response, cancelAfterFirst: AbortController | undefined) {
  const reader = response.body!.getReader();
  let text = "";
  const decoder = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) {
      return text;
    }
    text += decoder.decode(value, { stream: true });
    if (cancelAfterFirst !== undefined) {
      cancelAfterFirst.abort();
      await reader.cancel().catch(() => {});
      return text;
    }
  }
}

async function one(url: string, index: number): Promise<Outcome> {
  const r = rng(index * 7919 + 17);
  const kind = pickKind(r());
  const started = performance.now();
  const done = (status: Outcome["status"], detail?: string): Outcome => ({
    kind,
    ms: performance.now() - started,
    status,
    ...(detail === undefined ? {} : { detail }),
  });
  const json = { "content-type": "application/json" };
  const maxTokens = 4 + Math.floor(r() * 20);
  const classify = (status: number, expectOk: boolean): Outcome => {
    if (status === 503) {
      return done("503");
    }
    if (expectOk ? status === 200 : status >= 400 && status < 500) {
      return done("ok");
    }
    return done("failure", `${kind} #${index}: HTTP ${status}`);
  };
  try {
    switch (kind) {
      case "chat": {
        const res = await fetch(`${url}/v1/chat/completions`, {
          method: "POST",
          headers: json,
          body: JSON.stringify({
            messages: [
              { role: "system", content: "Be brief." },
              { role: "user", content: `Question number ${index}?` },
            ],
            max_tokens: maxTokens,
            temperature: r() * 1.5,
            seed: index,
          }),
        });
        await res.arrayBuffer();
        return classify(res.status, true);
      }
      case "stream":
      case "stream-cancelled": {
        const controller = new AbortController();
        const res = await fetch(`${url}/v1/completions`, {
          method: "POST",
          headers: json,
          body: JSON.stringify({
            prompt: `Story ${index}: once upon a time`,
            max_tokens: kind === "stream" ? maxTokens : 200,
            stream: true,
            ignore_eos: kind === "stream-cancelled",
            stream_options: { include_usage: r() < 0.5 },
          }),
          signal: controller.signal,
        });
        if (res.status !== 200) {
          return classify(res.status, true);
        }
        const text = await readAll(res, kind === "stream-cancelled" ? controller : undefined);
        if (kind === "stream" && !text.trimEnd().endsWith("data: [DONE]")) {
          return done("failure", `stream #${index} ended without [DONE]`);
        }
        if (text.includes('"error"')) {
          return done("failure", `stream #${index} carried an error event`);
        }
        return done("ok");
      }
      case "abandoned": {
        const controller = new AbortController();
        const timer = setTimeout(() => controller.abort(), 5 + r() * 40);
        try {
          const res = await fetch(`${url}/v1/chat/completions`, {
            method: "POST",
            headers: json,
            body: JSON.stringify({
              messages: [{ role: "user", content: "Tell me everything." }],
              max_tokens: 100,
              ignore_eos: true,
            }),
            signal: controller.signal,
          });
          await res.arrayBuffer();
          return classify(res.status, true); // answered before we gave up
        } catch (error) {
          if (controller.signal.aborted) {
            return done("ok");
          }
          throw error;
        } finally {
          clearTimeout(timer);
        }
      }
      case "bad-request": {
        const bad = BAD_REQUESTS[index % BAD_REQUESTS.length]!;
        const res = await fetch(`${url}${bad.route}`, {
          method: "POST",
          headers: { "content-type": bad.type ?? "application/json" },
          body: bad.body,
        });
        const body = await res.text();
        if (res.status >= 400 && res.status < 500 && !body.includes('"error"')) {
          return done("failure", `bad request #${index}: ${res.status} without an error body`);
        }
        return classify(res.status, false);
      }
      case "light": {
        const which = index % 4;
        const res =
          which === 0
            ? await fetch(`${url}/health`)
            : which === 1
              ? await fetch(`${url}/v1/models`)
              : which === 2
                ? await fetch(`${url}/metrics`)
                : await fetch(`${url}/tokenize`, {
                    method: "POST",
                    headers: json,
                    body: JSON.stringify({ content: `token ${index}` }),
                  });
        await res.arrayBuffer();
        return classify(res.status, true);
      }
    }
  } catch (error) {
    return done("failure", `${kind} #${index}: ${(error as Error).message}`);
  }
}

/** Waits until the server runs and queues nothing, then a little longer for its cleanup. */
async function idle(server: ServeProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (
      (await metric(server.url, "bitnet_busy_slots")) === 0 &&
      (await metric(server.url, "bitnet_queue_depth")) === 0
    ) {
      break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 1000));
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const total = options.requests;
  const warmup = options.warmup ?? Math.max(50, Math.floor(total / 5));
  const concurrency = options.concurrency ?? 8;
  const server = await startServe(
    options.model,
    options.serveArgs ?? ["-c", "512", "--parallel", "4", "--max-queue", "32", "-t", "2"],
  );
  let crashed = false;
  void server.exited.then(() => {
    crashed = true;
  });
  const outcomes: Outcome[] = [];
  const rssTrace: [number, number][] = [];
  const started = performance.now();
  let next = 0;
  const runUntil = async (end: number): Promise<void> => {
    const worker = async (): Promise<void> => {
      for (;;) {
        const index = next++;
        if (index >= end || crashed) {
          return;
        }
        if (options.minDurationMs !== undefined) {
          const due = started + (index * options.minDurationMs) / total;
          const wait = due - performance.now();
          if (wait > 0) {
            await new Promise((r) => setTimeout(r, wait));
          }
        }
        outcomes.push(await one(server.url, index));
        if (outcomes.length % Math.max(1, Math.floor(total / 10)) === 0 && !crashed) {
          rssTrace.push([outcomes.length, server.rssBytes()]);
        }
        options.onProgress?.(outcomes.length, total);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    next = end;
  };
  try {
    await runUntil(warmup);
    await idle(server);
    const rssAfterWarmup = await server.rssAfterGc();
    await runUntil(total);
    const durationMs = performance.now() - started;
    await idle(server);
    const rssAtEnd = crashed ? Number.NaN : await server.rssAfterGc();
    const kinds = (
      ["chat", "stream", "stream-cancelled", "abandoned", "bad-request", "light"] as const
    ).map((kind): KindReport => {
      const mine = outcomes.filter((o) => o.kind === kind);
      const answered = mine.filter((o) => o.status === "ok").map((o) => o.ms);
      return {
        kind,
        count: mine.length,
        ok: answered.length,
        status503: mine.filter((o) => o.status === "503").length,
        failures: mine.filter((o) => o.status === "failure").length,
        p50Ms: percentile(answered, 50),
        p99Ms: percentile(answered, 99),
      };
    });
    return {
      requests: outcomes.length,
      durationMs,
      kinds,
      failures: outcomes.filter((o) => o.status === "failure").map((o) => o.detail ?? o.kind),
      crashed,
      rssAfterWarmup,
      rssAtEnd,
      rssChange: (rssAtEnd - rssAfterWarmup) / rssAfterWarmup,
      rssTrace,
    };
  } finally {
    server.child.kill("SIGTERM");
    await server.exited;
  }
}

/** The report as a Markdown table and a summary line. */
export function formatSoak(report: SoakReport): string {
  const mb = (b: number) => (b / 2 ** 20).toFixed(1);
  const lines = [
    "| kind | requests | as expected | 503 | failures | p50 ms | p99 ms |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...report.kinds.map(
      (k) =>
        `| ${k.kind} | ${k.count} | ${k.ok} | ${k.status503} | ${k.failures} | ${k.p50Ms.toFixed(1)} | ${k.p99Ms.toFixed(1)} |`,
    ),
    "",
    `RSS while running (MiB): ${report.rssTrace.map(([n, b]) => `${n}: ${mb(b)}`).join(", ")}`,
    `${report.requests} requests in ${(report.durationMs / 1000).toFixed(1)} s; crashed: ${report.crashed ? "YES" : "no"}; failures: ${report.failures.length}; RSS idle after warm-up ${mb(report.rssAfterWarmup)} MiB, at the end ${mb(report.rssAtEnd)} MiB (${(100 * report.rssChange).toFixed(1)}%)`,
  ];
  return lines.join("\n");
}
