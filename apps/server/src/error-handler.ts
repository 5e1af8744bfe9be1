/**
 * Maps every error a route or fastify throws to OpenAI's error shape: the request's own
 * mistakes (bad JSON, wrong media type, too large a body, any fastify 4xx) stay 4xx; anything
 * else is logged and answered with a 500 that reveals nothing.
 */
import type { FastifyInstance } from "fastify";
import { ApiError, badRequest } from "./errors";

type FastifyLikeError = Error & { code?: string; statusCode?: number };

export function toApiError(
  error: FastifyLikeError,
  bodyLimit: number,
  logUnexpected: (error: Error) => void,
): ApiError {
  if (error instanceof ApiError) {
    return error;
  }
  if (error.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
    return new ApiError(
      413,
      "invalid_request_error",
      `the request body is larger than ${bodyLimit} bytes`,
      { code: "body_too_large" },
    );
  }
  if (error.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") {
    return new ApiError(415, "invalid_request_error", "send the request body as application/json", {
      code: "unsupported_media_type",
    });
  }
  if (
    error.code === "FST_ERR_CTP_EMPTY_JSON_BODY" ||
    error.code === "FST_ERR_CTP_INVALID_JSON_BODY" ||
    error instanceof SyntaxError
  ) {
    return badRequest(
      `the request body is not valid JSON (${error.message})`,
      null,
      "invalid_json",
    );
  }
  if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
    return new ApiError(error.statusCode, "invalid_request_error", error.message, {
      code: error.code ?? null,
    });
  }
  logUnexpected(error);
  return new ApiError(500, "server_error", "the server failed to handle this request", {
    code: "internal_error",
  });
}

/** Installs the error and not-found handlers. */
export function installErrorHandlers(
  app: FastifyInstance,
  options: { bodyLimit: number; log: (line: string) => void },
): void {
  app.setErrorHandler((error: FastifyLikeError, request, reply) => {
    const api = toApiError(error, options.bodyLimit, (e) =>
      options.log(`error on ${request.method} ${request.url}: ${e.stack ?? e.message}`),
    );
    for (const [k, v] of Object.entries(api.headers)) {
      reply.header(k, v);
    }
    return reply.status(api.status).send(api.toBody());
  });
  app.setNotFoundHandler((request, reply) => {
    const url = request.url.split("?")[0]!;
    // A route that exists with another method is a 405 that says which methods it takes.
    const allowed = (["GET", "POST", "PUT", "DELETE", "PATCH"] as const).filter((method) =>
      app.hasRoute({ method, url }),
    );
    if (allowed.length > 0) {
      return reply
        .status(405)
        .header("allow", allowed.join(", "))
        .send(
          new ApiError(
            405,
            "invalid_request_error",
            `${request.method} is not allowed on ${url}; use ${allowed.join(" or ")}`,
            { code: "method_not_allowed" },
          ).toBody(),
        );
    }
    return reply.status(404).send(
      new ApiError(404, "not_found_error", `no route ${request.method} ${url}`, {
        code: "not_found",
      }).toBody(),
    );
  });
}
