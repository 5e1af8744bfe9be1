/**
 * The chat page at `/`: the static build of apps/web (the same page that runs models in the
 * browser; served here it talks to this server's API). The page's files are public, so that a
 * person can open it and type an API key; the API calls it makes need the key like any other.
 */
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import fastifyStatic from "@fastify/static";
import type { FastifyInstance } from "fastify";

/** The web page's build folder, or why there is none. */
export function webUiRoot(): { root: string } | { reason: string } {
  let pkg: string;
  try {
    pkg = createRequire(import.meta.url).resolve("@bitnet-ts/web/package.json");
  } catch {
    return { reason: "the @bitnet-ts/web package is not installed" };
  }
  const root = path.join(path.dirname(pkg), "dist");
  if (!fs.existsSync(path.join(root, "index.html"))) {
    return { reason: `the page is not built (run pnpm --filter @bitnet-ts/web build): ${root}` };
  }
  return { root };
}

/** Whether a request is for one of the page's files (public) rather than for the API. */
export function isWebUiRequest(method: string, url: string): boolean {
  if (method !== "GET" && method !== "HEAD") {
    return false;
  }
  const pathname = url.split("?")[0]!;
  return pathname === "/" || pathname === "/index.html" || pathname.startsWith("/assets/");
}

export async function registerWebUi(app: FastifyInstance, root: string): Promise<void> {
  await app.register(fastifyStatic, {
    root,
    prefix: "/",
    index: "index.html",
    // Only the page and its assets: not the demo model the static site ships (the server has its own).
    allowedPath: (pathname) => isWebUiRequest("GET", pathname),
    wildcard: true,
  });
}
