/**
 * What the browser tests share: a static server for the built page and the fixture models (with
 * HTTP range requests, as the page reads models), Debian's Chromium driven by puppeteer-core
 * (no browser is downloaded), `bitnet run` and `bitnet serve` from the built CLI, and a check
 * that a screenshot shows something.
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { PNG } from "pngjs";
import puppeteer from "puppeteer-core";

const here = path.dirname(fileURLToPath(import.meta.url));
export const DIST = path.resolve(here, "../dist");
export const CLI = path.resolve(here, "../../cli/dist/bitnet.js");

/** Chromium's path (CHROMIUM_PATH, else Debian's), or undefined. */
/** @returns {string | undefined} */
export function chromiumPath() {
  const candidates = [
    process.env["CHROMIUM_PATH"],
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
  ];
  return candidates.find((p) => p !== undefined && fs.existsSync(p));
}

/** Why the browser tests cannot run here, if they cannot (never in CI: there they must run). */
/** @returns {string | undefined} */
export function browserSkipReason() {
  if (process.env["CI"] !== undefined) {
    return undefined;
  }
  if (chromiumPath() === undefined) {
    return "no Chromium here (apt-get install chromium, or set CHROMIUM_PATH)";
  }
  if (!fs.existsSync(path.join(DIST, "index.html"))) {
    return "the page is not built (pnpm --filter @bitnet-ts/web build)";
  }
  return undefined;
}

/** @type {Record<string, string>} */
const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".css": "text/css",
  ".gguf": "application/octet-stream",
  ".json": "application/json",
};

/** Serves `routes` (URL path → file) and the page's dist folder, with byte ranges. */
/**
 * @param {Record<string, string>} routes
 * @returns {Promise<{ url: string, close(): Promise<void> }>}
 */
export async function staticServer(routes) {
  const server = http.createServer((req, res) => {
    const pathname = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    const file = routes[pathname] ?? path.join(DIST, pathname === "/" ? "index.html" : pathname);
    if (!file.startsWith(DIST) && routes[pathname] === undefined) {
      res.writeHead(403).end();
      return;
    }
    if (!fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
      return;
    }
    const size = fs.statSync(file).size;
    const type = TYPES[path.extname(file)] ?? "application/octet-stream";
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    if (range !== null) {
      const start = Number(range[1]);
      const end = range[2] === "" ? size - 1 : Math.min(size - 1, Number(range[2]));
      if (start >= size || end < start) {
        res.writeHead(416, { "content-range": `bytes */${size}` }).end();
        return;
      }
      res.writeHead(206, {
        "content-type": type,
        "content-length": end - start + 1,
        "content-range": `bytes ${start}-${end}/${size}`,
        "accept-ranges": "bytes",
      });
      fs.createReadStream(file, { start, end }).pipe(res);
      return;
    }
    res.writeHead(200, { "content-type": type, "content-length": size, "accept-ranges": "bytes" });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(undefined)));
  const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => server.close(() => resolve(undefined))),
  };
}

/** Headless Chromium with WebGPU on SwiftShader (software Vulkan, bundled with Chromium). */
/** @returns {Promise<import("puppeteer-core").Browser>} */
export function launchChromium() {
  return puppeteer.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: [
      "--no-sandbox",
      "--enable-unsafe-webgpu",
      "--enable-features=Vulkan",
      "--use-vulkan=swiftshader",
      "--use-angle=swiftshader",
      "--disable-vulkan-surface",
      "--window-size=1100,900",
    ],
  });
}

/** `bitnet run --json` on the file: the generated token ids and text. */
/**
 * @param {string} model
 * @param {string} prompt
 * @param {number} nTokens
 * @returns {{ tokens: number[], text: string }}
 */
export function bitnetRun(model, prompt, nTokens) {
  const r = spawnSync(
    process.execPath,
    [
      CLI,
      "run",
      "-m",
      model,
      "-p",
      prompt,
      "-n",
      String(nTokens),
      "--temp",
      "0",
      "--backend",
      "cpu",
      "--json",
    ],
    { encoding: "utf8", timeout: 120_000 },
  );
  if (r.status !== 0) {
    throw new Error(`bitnet run failed: ${r.stderr}`);
  }
  const json = JSON.parse(r.stdout);
  return { tokens: json.tokens, text: json.text };
}

/** Starts `bitnet serve` on a free port and waits until /health says the model is loaded. */
/**
 * @param {string} model
 * @param {readonly string[]} [extra]
 * @returns {Promise<{ url: string, stop(): Promise<void> }>}
 */
export async function bitnetServe(model, extra = []) {
  /** @type {number} */
  const port = await new Promise((resolve) => {
    const s = http.createServer().listen(0, "127.0.0.1", () => {
      const p = /** @type {import("node:net").AddressInfo} */ (s.address()).port;
      s.close(() => resolve(p));
    });
  });
  const child = spawn(
    process.execPath,
    [CLI, "serve", "-m", model, "--port", String(port), "--backend", "cpu", ...extra],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr?.on("data", (d) => {
    stderr += d.toString();
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const r = await fetch(`${url}/health`);
      if (r.ok) {
        break;
      }
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill();
      throw new Error(`bitnet serve did not come up: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    stop: async () => {
      child.kill("SIGTERM");
      await new Promise((resolve) => child.once("exit", resolve));
    },
  };
}

/**
 * A screenshot "shows something" when it is not one flat colour: at least `minColours` distinct
 * colours and some pixels away from the background (the most common colour).
 */
/**
 * @param {Uint8Array} png
 * @returns {{ colours: number, inkFraction: number }}
 */
export function screenshotStats(png) {
  const image = PNG.sync.read(Buffer.from(png));
  const counts = new Map();
  for (let i = 0; i < image.data.length; i += 4) {
    const key = (image.data[i] << 16) | (image.data[i + 1] << 8) | image.data[i + 2];
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const pixels = image.data.length / 4;
  const background = Math.max(...counts.values());
  return { colours: counts.size, inkFraction: 1 - background / pixels };
}
