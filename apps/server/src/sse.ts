/**
 * Server-sent events in OpenAI's form: `data: {chunk}\n\n` per chunk, `data: [DONE]\n\n` last.
 * Once the headers are sent a failure cannot change the status: it is reported as an error
 * event in the stream, which then ends.
 */
import type { Generation } from "@bitnet-ts/generation";
import type { FastifyReply } from "fastify";
import type { Job } from "./openai";
import { chunk, openAiFinish, type ResponseBase, usageChunk } from "./responses";

/** How a stream ended, for the request counter: 200, 499 (client gone) or 500. */
export type StreamOutcome = "200" | "499" | "500";

/** Writes SSE events to a hijacked reply; writes after the client went away are dropped. */
export function openEventStream(reply: FastifyReply) {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-accel-buffering": "no",
  });
  const open = (): boolean => !res.writableEnded && !res.destroyed;
  return {
    send(payload: unknown): void {
      if (open()) {
        res.write(`data: ${JSON.stringify(payload)}\n\n`);
      }
    },
    done(): void {
      if (open()) {
        res.end("data: [DONE]\n\n");
      }
    },
    fail(error: unknown): void {
      if (open()) {
        res.write(
          `data: ${JSON.stringify({
            error: {
              message: (error as Error).message,
              type: "server_error",
              param: null,
              code: "generation_failed",
            },
          })}\n\n`,
        );
      }
      res.end();
    },
  };
}

/**
 * Streams a generation as chunks: the assistant role first (chat), a chunk per text piece, one
 * with the finish reason, the usage when asked, then [DONE].
 */
export async function streamGeneration(
  reply: FastifyReply,
  job: Job,
  base: ResponseBase,
  generation: Generation,
  options: { aborted: () => boolean; onResult: (result: Awaited<Generation["result"]>) => void },
): Promise<{ outcome: StreamOutcome; error?: unknown }> {
  const events = openEventStream(reply);
  try {
    if (job.kind === "chat") {
      events.send(chunk(job, base, { role: true }));
    }
    for await (const piece of generation) {
      events.send(chunk(job, base, { text: piece }));
    }
    const result = await generation.result;
    options.onResult(result);
    events.send(chunk(job, base, { finish: openAiFinish(result.finishReason) }));
    if (job.body.stream_options?.include_usage === true) {
      events.send(usageChunk(job, base, result));
    }
    events.done();
    return { outcome: options.aborted() ? "499" : "200" };
  } catch (error) {
    events.fail(error);
    return { outcome: "500", error };
  }
}
