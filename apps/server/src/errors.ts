/**
 * Errors as OpenAI clients expect them: an HTTP status and `{"error": {"message", "type",
 * "param", "code"}}`. Bad input is always a 4xx; a 5xx means a bug in the server.
 */
import { BitnetError } from "@bitnet-ts/errors";

export type ApiErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "not_found_error"
  | "rate_limit_error"
  | "unavailable_error"
  | "server_error";

export class ApiError extends Error {
  readonly status: number;
  readonly type: ApiErrorType;
  readonly param: string | null;
  readonly code: string | null;
  /** Extra fields merged into the error object (e.g. n_prompt_tokens, n_ctx). */
  readonly extra: Readonly<Record<string, unknown>>;
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    status: number,
    type: ApiErrorType,
    message: string,
    options: {
      param?: string | null;
      code?: string | null;
      extra?: Record<string, unknown>;
      headers?: Record<string, string>;
    } = {},
  ) {
    super(message);
    this.status = status;
    this.type = type;
    this.param = options.param ?? null;
    this.code = options.code ?? null;
    this.extra = options.extra ?? {};
    this.headers = options.headers ?? {};
  }

  toBody(): { error: Record<string, unknown> } {
    return {
      error: {
        message: this.message,
        type: this.type,
        param: this.param,
        code: this.code,
        ...this.extra,
      },
    };
  }
}

export function badRequest(
  message: string,
  param: string | null = null,
  code: string | null = "invalid_value",
): ApiError {
  return new ApiError(400, "invalid_request_error", message, { param, code });
}

/** 503 while the server stops (new requests and anything still queued). */
export function shuttingDown(): ApiError {
  return new ApiError(503, "unavailable_error", "the server is shutting down", {
    code: "shutting_down",
  });
}

/** 503 until the model is loaded; clients retry after a second. */
export function loadingModel(): ApiError {
  return new ApiError(503, "unavailable_error", "Loading model", {
    code: "loading",
    headers: { "retry-after": "1" },
  });
}

/** The server could not bind its address (port in use, unknown host, no permission). */
export class ServerListenError extends BitnetError {
  constructor(message: string) {
    super("SERVER_LISTEN", message);
  }
}
