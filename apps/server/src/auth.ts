/**
 * API keys: `Authorization: Bearer KEY` or `X-Api-Key: KEY` on every route but /health. Keys are
 * compared as SHA-256 digests with timingSafeEqual against every configured key, so neither the
 * length of a key nor which key matched shows in the response time.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { ApiError } from "./errors";

const PUBLIC_ROUTES = new Set(["/health", "/v1/health"]);

function digest(key: string): Buffer {
  return createHash("sha256").update(key).digest();
}

/** Constant-time key check: every configured key is compared, equal-length digests only. */
export function keyMatches(given: string, keys: readonly Buffer[]): boolean {
  const g = digest(given);
  let ok = false;
  for (const k of keys) {
    ok = timingSafeEqual(g, k) || ok;
  }
  return ok;
}

/** The key a request sends, if any. */
function presentedKey(headers: Record<string, string | string[] | undefined>): string | undefined {
  const header = headers["authorization"];
  if (typeof header === "string" && header.startsWith("Bearer ")) {
    return header.slice(7);
  }
  const key = headers["x-api-key"];
  return typeof key === "string" ? key : undefined;
}

/**
 * Requires one of `apiKeys` on every request but /health and those `isPublic` lets through (the
 * chat page's files); none configured = no authentication.
 */
export function installAuth(
  app: FastifyInstance,
  apiKeys: readonly string[],
  isPublic: (method: string, url: string) => boolean = () => false,
): void {
  if (apiKeys.length === 0) {
    return;
  }
  const keys = apiKeys.map(digest);
  app.addHook("onRequest", async (request) => {
    if (PUBLIC_ROUTES.has(request.url) || isPublic(request.method, request.url)) {
      return;
    }
    const given = presentedKey(request.headers);
    if (given === undefined || !keyMatches(given, keys)) {
      throw new ApiError(
        401,
        "authentication_error",
        "invalid or missing API key (send Authorization: Bearer KEY)",
        { code: "invalid_api_key" },
      );
    }
  });
}
