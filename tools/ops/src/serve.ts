/** Starting and watching `bitnet serve` processes (the built CLI), as operators run them. */
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
/** The built CLI (src/ and dist/ are both one level below tools/ops). */
export const BITNET_BIN: string = path.resolve(here, "../../../apps/cli/dist/bitnet.js");

export interface ServeProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly url: string;
  /** Everything it wrote to stderr so far. */
  stderr(): string;
  /** Resolves with the exit code (or the signal's name) when it exits. */
  readonly exited: Promise<number | string>;
  /** Its resident set size now, from /proc (Linux). */
  rssBytes(): number;
  /** Its RSS right after a full garbage collection (SIGUSR2; the server runs with --expose-gc). */
  rssAfterGc(): Promise<number>;
}

/** A free TCP port on loopback. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export function rssOf(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (kb === null) {
    throw new Error(`no VmRSS for process ${pid}`);
  }
  return Number(kb[1]) * 1024;
}

/** Starts `bitnet serve` and waits until /health says ok. */
export async function startServe(
  model: string,
  args: readonly string[] = [],
  options: { port?: number; timeoutMs?: number } = {},
): Promise<ServeProcess> {
  if (!fs.existsSync(BITNET_BIN)) {
    throw new Error(`${BITNET_BIN} is missing: build the CLI first (pnpm build)`);
  }
  const port = options.port ?? (await freePort());
  const child = spawn(
    process.execPath,
    [
      "--expose-gc",
      BITNET_BIN,
      "serve",
      "-m",
      model,
      "--port",
      String(port),
      "--no-webui",
      ...args,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr!.on("data", (d) => {
    stderr += d;
  });
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown")),
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (options.timeoutMs ?? 120_000);
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  for (;;) {
    if (gone) {
      throw new Error(`bitnet serve exited before it was ready:\n${stderr}`);
    }
    const ok = await fetch(`${url}/health`)
      .then((r) => r.status === 200)
      .catch(() => false);
    if (ok) {
      break;
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`bitnet serve did not become ready:\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    child,
    port,
    url,
    stderr: () => stderr,
    exited,
    rssBytes: () => rssOf(child.pid!),
    rssAfterGc: async () => {
      // Full collections until two readings a second apart agree within 1% (the first ones
      // still include pages the collector is giving back).
      let last = Number.NaN;
      for (let attempt = 0; attempt < 6; attempt++) {
        const before = stderr.length;
        child.kill("SIGUSR2");
        for (let i = 0; i < 200 && !stderr.slice(before).includes("after a full GC"); i++) {
          await new Promise((r) => setTimeout(r, 10));
        }
        await new Promise((r) => setTimeout(r, 1000));
        const rss = rssOf(child.pid!);
        if (Math.abs(rss - last) <= 0.01 * last) {
          return rss;
        }
        last = rss;
      }
      return last;
    },
  };
}

/** The value of an unlabelled Prometheus metric of a server. */
export async function metric(
  url: string,
  name: string,
  headers: Record<string, string> = {},
): Promise<number> {
  const text = await (await fetch(`${url}/metrics`, { headers })).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return Number(line?.split(" ")[1]);
}

/** The p-th percentile (0-100) of `values` (nearest rank). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) {
    return Number.NaN;
  }
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
