/** GET /health, /v1/health (public), /v1/models and /metrics. */
import type { FastifyInstance, FastifyReply } from "fastify";
import type { ServerContext } from "../context";

export function registerInfoRoutes(app: FastifyInstance, ctx: ServerContext): void {
  // llama.cpp's shape: 503 with a message while loading or shutting down, then {"status":"ok"}.
  const health = async (_request: unknown, reply: FastifyReply) => {
    const why = ctx.lifecycle.unavailable();
    if (why !== undefined) {
      return reply
        .status(503)
        .send({ error: { code: 503, message: why, type: "unavailable_error" } });
    }
    return { status: "ok" };
  };
  app.get("/health", health);
  app.get("/v1/health", health);

  app.get("/v1/models", async () => {
    const g = ctx.lifecycle.generator;
    return {
      object: "list",
      data: [
        {
          id: ctx.alias,
          object: "model",
          created: ctx.created,
          owned_by: "bitnet-ts",
          ...(g === undefined
            ? {}
            : {
                meta: {
                  n_ctx: g.model.contextLength,
                  n_vocab: g.tokenizer.vocabSize,
                  architecture: String(
                    g.model.description.file.metadata.get("general.architecture")?.value,
                  ),
                  backend: g.model.backendName,
                },
              }),
        },
      ],
    };
  });

  app.get("/metrics", async (_request, reply) => {
    reply.header("content-type", ctx.metrics.registry.contentType);
    return ctx.metrics.registry.metrics();
  });
}
