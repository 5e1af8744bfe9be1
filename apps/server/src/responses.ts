/** Generation results → OpenAI response objects: whole completions and streamed chunks. */
import { randomBytes } from "node:crypto";
import type { FinishReason, GenerationResult } from "@bitnet-ts/generation";
import type { Job } from "./openai";

const VERSION = "0.0.0";
const FINGERPRINT = `bitnet-ts-${VERSION}`;

/** The fields every object of one response shares (the id stays the same across chunks). */
export interface ResponseBase {
  readonly id: string;
  readonly created: number;
  readonly model: string;
  readonly system_fingerprint: string;
}

export function responseBase(job: Job, alias: string): ResponseBase {
  const prefix = job.kind === "chat" ? "chatcmpl" : "cmpl";
  return {
    id: `${prefix}-${randomBytes(12).toString("base64url")}`,
    created: Math.floor(Date.now() / 1000),
    model: alias,
    system_fingerprint: FINGERPRINT,
  };
}

export function openAiFinish(reason: FinishReason): "stop" | "length" {
  return reason === "stop" ? "stop" : "length";
}

export function usage(job: Job, result: GenerationResult) {
  return {
    prompt_tokens: job.promptTokens.length,
    completion_tokens: result.tokens.length,
    total_tokens: job.promptTokens.length + result.tokens.length,
    // OpenAI's field for prompt tokens served from the prompt cache (not evaluated again).
    prompt_tokens_details: { cached_tokens: result.cachedTokens },
  };
}

/** The whole response of a request that did not stream. */
export function completionResponse(job: Job, base: ResponseBase, result: GenerationResult) {
  const finish = openAiFinish(result.finishReason);
  return {
    ...base,
    object: job.kind === "chat" ? "chat.completion" : "text_completion",
    choices: [
      job.kind === "chat"
        ? {
            index: 0,
            message: { role: "assistant", content: result.text },
            logprobs: null,
            finish_reason: finish,
          }
        : { index: 0, text: result.text, logprobs: null, finish_reason: finish },
    ],
    usage: usage(job, result),
  };
}

/** What a stream's chunks carry: the role first (chat), then text, then the finish reason. */
export type ChunkContent =
  | { readonly role: true }
  | { readonly text: string }
  | { readonly finish: "stop" | "length" };

/** One streamed chunk. */
export function chunk(job: Job, base: ResponseBase, content: ChunkContent) {
  const object = job.kind === "chat" ? "chat.completion.chunk" : "text_completion";
  const finish = "finish" in content ? content.finish : null;
  if (job.kind !== "chat") {
    const text = "text" in content ? content.text : "";
    return {
      ...base,
      object,
      choices: [{ index: 0, text, logprobs: null, finish_reason: finish }],
    };
  }
  const delta =
    "finish" in content
      ? {}
      : "role" in content
        ? { role: "assistant", content: "" }
        : { content: content.text };
  return { ...base, object, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] };
}

/** The last chunk when stream_options.include_usage is set: no choices, the usage. */
export function usageChunk(job: Job, base: ResponseBase, result: GenerationResult) {
  const object = job.kind === "chat" ? "chat.completion.chunk" : "text_completion";
  return { ...base, object, choices: [], usage: usage(job, result) };
}
