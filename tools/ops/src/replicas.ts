/**
 * Replicas behind a real balancer, on loopback: three `bitnet serve` processes behind HAProxy
 * (health checks on /health), a bounded load (autocannon) while one replica is killed with
 * SIGKILL and another is stopped with SIGTERM and started again. What is measured: requests
 * answered, requests failed (and how), how long HAProxy took to mark the killed replica down,
 * and that the restarted one comes back.
 *
 * HAProxy settings that matter: `option httpchk GET /health` every `inter` 500 ms, down after 2
 * failed checks (`fall 2`); `retry-on conn-failure empty-response 503` with a buffered request
 * body re-sends to another replica a request whose replica died before answering, or answered
 * 503 (shutting down, or its queue full: nothing was generated), so whole (non-streamed)
 * requests survive a kill and a restart; generation requests have no side effects. A stream
 * already under way on the killed replica cannot be moved and ends cut short.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import autocannon from "autocannon";
import { freePort, type ServeProcess, startServe } from "./serve";

/** Why the replicas check cannot run here, or undefined when it can. */
export function haproxyMissing(): string | undefined {
  const r = spawnSync("haproxy", ["-v"], { encoding: "utf8" });
  return r.status === 0 ? undefined : "haproxy is not installed (apt-get install haproxy)";
}

export interface ReplicasOptions {
  readonly model: string;
  /** Requests of the load (default 600). */
  readonly requests?: number;
  /** Connections of the load (default 12). */
  readonly connections?: number;
  /** Streams started before the kill, spread over the replicas (default 6). */
  readonly streams?: number;
  readonly log?: (line: string) => void;
}

export interface ReplicasReport {
  readonly requests: number;
  readonly ok: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly timeouts: number;
  /** Status codes the load's answers had, and how often. */
  readonly statusCodes: Readonly<Record<string, number>>;
  readonly durationMs: number;
  readonly requestsPerSecond: number;
  /** From the SIGKILL to HAProxy reporting the replica DOWN. */
  readonly detectDownMs: number;
  /** From the restart of the SIGTERMed replica to HAProxy reporting it UP. */
  readonly backUpMs: number;
  /** Streams that finished with [DONE], and those cut short (on the killed replica). */
  readonly streamsDone: number;
  readonly streamsCut: number;
  /** What a cut stream's client saw. */
  readonly cutErrors: readonly string[];
  /** Answers per replica (HAProxy's counters): r1 killed, r2 restarted. */
  readonly perReplica: Readonly<Record<string, number>>;
  /** HAProxy's check settings, for the report. */
  readonly checkIntervalMs: number;
  readonly checkFall: number;
}

const INTER_MS = 500;
const FALL = 2;

function haproxyConfig(dir: string, frontend: number, ports: readonly number[]): string {
  return `global
    maxconn 512
    stats socket ${dir}/admin.sock mode 600 level admin

defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    option http-buffer-request
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response 503

frontend api
    bind 127.0.0.1:${frontend}
    default_backend bitnet

backend bitnet
    balance leastconn
    option httpchk GET /health
    http-check expect status 200
    default-server inter ${INTER_MS}ms fall ${FALL} rise 2
${ports.map((p, i) => `    server r${i + 1} 127.0.0.1:${p} check`).join("\n")}
`;
}

/** HAProxy's `show stat` as rows keyed by column name. */
async function showStat(socket: string): Promise<Record<string, string>[]> {
  const text = await new Promise<string>((resolve, reject) => {
    const client = net.createConnection(socket, () => client.end("show stat\n"));
    let out = "";
    client.on("data", (d) => {
      out += d;
    });
    client.on("end", () => resolve(out));
    client.on("error", reject);
  });
  const [header, ...lines] = text.trim().split("\n");
  const columns = header!.replace(/^# /, "").split(",");
  return lines.map((line) => {
    const cells = line.split(",");
    return Object.fromEntries(columns.map((c, i) => [c, cells[i] ?? ""]));
  });
}

async function serverStatus(socket: string, name: string): Promise<string> {
  const row = (await showStat(socket)).find(
    (r) => r["pxname"] === "bitnet" && r["svname"] === name,
  );
  return row?.["status"] ?? "missing";
}

async function waitFor(
  check: () => Promise<boolean>,
  what: string,
  timeoutMs = 30_000,
): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await check().catch(() => false)) {
      return performance.now() - started;
    }
    if (performance.now() - started > timeoutMs) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Reads a stream to its end; "done" with [DONE], else what the client saw. */
async function followStream(url: string): Promise<{ done: boolean; error?: string }> {
  try {
    const r = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        prompt: "A long story:",
        max_tokens: 400,
        stream: true,
        ignore_eos: true,
      }),
    });
    if (r.status !== 200) {
      return { done: false, error: `HTTP ${r.status}: ${await r.text()}` };
    }
    const text = await r.text();
    return text.trimEnd().endsWith("data: [DONE]")
      ? { done: true }
      : { done: false, error: "the stream ended without [DONE]" };
  } catch (error) {
    const cause = (error as Error & { cause?: Error }).cause;
    return {
      done: false,
      error: `${(error as Error).message}${cause ? `: ${cause.message}` : ""}`,
    };
  }
}

export async function runReplicas(options: ReplicasOptions): Promise<ReplicasReport> {
  const log = options.log ?? (() => {});
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bitnet-replicas-"));
  const serveArgs = [
    "-c",
    "512",
    "--parallel",
    "2",
    "--max-queue",
    "16",
    "-t",
    "1",
    "--grace",
    "5",
  ];
  const replicas: ServeProcess[] = [];
  let haproxy: ChildProcess | undefined;
  try {
    for (let i = 0; i < 3; i++) {
      replicas.push(await startServe(options.model, serveArgs));
    }
    log(`replicas on ports ${replicas.map((r) => r.port).join(", ")}`);
    const frontend = await freePort();
    const config = path.join(dir, "haproxy.cfg");
    fs.writeFileSync(
      config,
      haproxyConfig(
        dir,
        frontend,
        replicas.map((r) => r.port),
      ),
    );
    haproxy = spawn("haproxy", ["-f", config, "-db"], { stdio: ["ignore", "ignore", "pipe"] });
    let haproxyLog = "";
    haproxy.stderr!.on("data", (d) => {
      haproxyLog += d;
    });
    const socket = path.join(dir, "admin.sock");
    await waitFor(
      async () =>
        (await Promise.all(["r1", "r2", "r3"].map((n) => serverStatus(socket, n)))).every(
          (s) => s === "UP",
        ),
      `HAProxy to see the three replicas UP (${haproxyLog})`,
    );
    const url = `http://127.0.0.1:${frontend}`;
    log(`HAProxy on ${url}: r1, r2, r3 UP`);

    // Streams first (leastconn spreads them), then the bounded load.
    const streams = Array.from({ length: options.streams ?? 6 }, () => followStream(url));
    await new Promise((r) => setTimeout(r, 300));
    const started = performance.now();
    const load = autocannon({
      url: `${url}/v1/completions`,
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "Once upon a time", max_tokens: 8, temperature: 0.7 }),
      connections: options.connections ?? 12,
      amount: options.requests ?? 600,
      timeout: 60,
    });

    await new Promise((r) => setTimeout(r, 1500));
    const killed = replicas[0]!;
    killed.child.kill("SIGKILL");
    const killedAt = performance.now();
    log("r1 killed (SIGKILL)");
    const detectDownMs = await waitFor(
      async () => (await serverStatus(socket, "r1")).startsWith("DOWN"),
      "HAProxy to mark r1 DOWN",
    );
    log(`HAProxy marked r1 DOWN after ${Math.round(performance.now() - killedAt)} ms`);

    await new Promise((r) => setTimeout(r, 500));
    const stopped = replicas[1]!;
    stopped.child.kill("SIGTERM");
    log("r2 stopping (SIGTERM: it finishes its requests, then exits)");
    await stopped.exited;
    const restarted = await startServe(options.model, serveArgs, { port: stopped.port });
    replicas[1] = restarted;
    const restartedAt = performance.now();
    const backUpMs = await waitFor(
      async () => (await serverStatus(socket, "r2")) === "UP",
      "HAProxy to mark the restarted r2 UP",
    );
    log(`r2 restarted; HAProxy marked it UP after ${Math.round(backUpMs)} ms`);

    const result = await load;
    const durationMs = performance.now() - started;
    const streamResults = await Promise.all(streams);
    const stats = await showStat(socket);
    const perReplica = Object.fromEntries(
      stats
        .filter((r) => r["pxname"] === "bitnet" && /^r\d$/.test(r["svname"] ?? ""))
        .map((r) => [r["svname"]!, Number(r["hrsp_2xx"] ?? 0)]),
    );
    void restartedAt;
    return {
      requests: result.requests.sent,
      ok: result["2xx"],
      non2xx: result.non2xx,
      errors: result.errors,
      timeouts: result.timeouts,
      statusCodes: Object.fromEntries(
        Object.entries(result.statusCodeStats ?? {}).map(([code, v]) => [
          code,
          (v as { count: number }).count,
        ]),
      ),
      durationMs,
      requestsPerSecond: (result["2xx"] * 1000) / durationMs,
      detectDownMs: detectDownMs,
      backUpMs,
      streamsDone: streamResults.filter((s) => s.done).length,
      streamsCut: streamResults.filter((s) => !s.done).length,
      cutErrors: streamResults.flatMap((s) => (s.error === undefined ? [] : [s.error])),
      perReplica,
      checkIntervalMs: INTER_MS,
      checkFall: FALL,
    };
  } finally {
    haproxy?.kill("SIGTERM");
    for (const r of replicas) {
      r.child.kill("SIGTERM");
    }
    await Promise.all(replicas.map((r) => r.exited));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export function formatReplicas(r: ReplicasReport): string {
  return [
    "| requests | 2xx | non-2xx | errors | timeouts | answered/s | r1 DOWN after | r2 UP after restart | streams done | streams cut |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    `| ${r.requests} | ${r.ok} | ${r.non2xx} | ${r.errors} | ${r.timeouts} | ${r.requestsPerSecond.toFixed(1)} | ${Math.round(r.detectDownMs)} ms | ${Math.round(r.backUpMs)} ms | ${r.streamsDone} | ${r.streamsCut} |`,
    "",
    `status codes: ${Object.entries(r.statusCodes)
      .map(([k, v]) => `${k} × ${v}`)
      .join(", ")}`,
    `answers per replica (HAProxy): ${Object.entries(r.perReplica)
      .map(([k, v]) => `${k} ${v}`)
      .join(
        ", ",
      )}; health checks every ${r.checkIntervalMs} ms, down after ${r.checkFall} failures`,
    ...(r.cutErrors.length > 0 ? [`cut streams saw: ${[...new Set(r.cutErrors)].join("; ")}`] : []),
  ].join("\n");
}
