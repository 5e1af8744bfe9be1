/**
 * API keys: `Authorization: Bearer KEY` or `X-Api-Key: KEY` on every route but /health. A key
 * is hashed (SHA-256) and compared with every tenant's digest in constant time (tenants.ts), so
 * neither the length of a key nor which key matched shows in the response time. The tenant a
 * request belongs to is kept for the routes (rate limits, usage).
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ApiError } from "./errors";
import type { Tenant, Tenants } from "./tenants";

const PUBLIC_ROUTES = new Set(["/health", "/v1/health"]);

const tenantOfRequest = new WeakMap<FastifyRequest, Tenant>();

/** The tenant whose key authenticated the request (undefined when the server has no keys). */
export function tenantOf(request: FastifyRequest): Tenant | undefined {
  return tenantOfRequest.get(request);
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
 * Requires a tenant's key on every request but /health and those `isPublic` lets through (the
 * chat page's files). Without tenants at start there is no authentication; a reload that leaves
 * none refuses every key rather than opening the server.
 */
export function installAuth(
  app: FastifyInstance,
  tenants: Tenants,
  isPublic: (method: string, url: string) => boolean = () => false,
): void {
  if (tenants.size === 0) {
    return;
  }
  app.addHook("onRequest", async (request) => {
    if (PUBLIC_ROUTES.has(request.url) || isPublic(request.method, request.url)) {
      return;
    }
    const given = presentedKey(request.headers);
    const tenant = given === undefined ? undefined : tenants.identify(given);
    if (tenant === undefined) {
      throw new ApiError(
        401,
        "authentication_error",
        "invalid or missing API key (send Authorization: Bearer KEY)",
        { code: "invalid_api_key" },
      );
    }
    tenantOfRequest.set(request, tenant);
  });
}
