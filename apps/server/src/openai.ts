/**
 * OpenAI requests → what the engine runs: the prompt's tokens (chat template or raw prompt)
 * and the generation options (OpenAI's defaults where they differ from llama.cpp's).
 */
import type { GenerateOptions, TextGenerator } from "@bitnet-ts/generation";
import { ApiError, badRequest } from "./errors";
import {
  type ChatBody,
  type CompletionBody,
  checkTokens,
  messageText,
  type SamplingBody,
} from "./schemas";

/** One request, ready to generate. */
export interface Job {
  readonly kind: "chat" | "text";
  readonly body: ChatBody | CompletionBody;
  readonly promptTokens: number[];
  /** Generation options (without the abort signal, added at admission). */
  readonly options: GenerateOptions & { readonly maxTokens: number };
}

function checkContext(promptLength: number, g: TextGenerator): void {
  const ctx = g.model.contextLength;
  if (promptLength >= ctx) {
    throw new ApiError(
      400,
      "invalid_request_error",
      `the prompt has ${promptLength} tokens but the context holds ${ctx}: shorten it (or start the server with a larger -c)`,
      {
        param: "messages",
        code: "context_length_exceeded",
        extra: { n_prompt_tokens: promptLength, n_ctx: ctx },
      },
    );
  }
}

/** A chat request: the messages through the model's chat template. */
export function chatJob(body: ChatBody, g: TextGenerator): Job {
  const messages = body.messages.map((m) => ({
    role: m.role === "developer" ? "system" : m.role,
    content: messageText(m.content),
  }));
  let promptTokens: number[];
  try {
    promptTokens = g.tokenizer.encodeChat(messages, { addGenerationPrompt: true });
  } catch (error) {
    throw badRequest(
      `could not apply the chat template: ${(error as Error).message}`,
      "messages",
      "invalid_messages",
    );
  }
  checkContext(promptTokens.length, g);
  return { kind: "chat", body, promptTokens, options: generateOptions(body, promptTokens, g) };
}

/** A completion request: the prompt as text or token ids. */
export function completionJob(body: CompletionBody, g: TextGenerator): Job {
  const p = body.prompt;
  let promptTokens: number[];
  if (typeof p === "string" || (Array.isArray(p) && typeof p[0] === "string")) {
    const text = typeof p === "string" ? p : (p[0] as string);
    promptTokens = g.tokenizer.encode(text, { parseSpecial: true });
  } else {
    promptTokens = Array.isArray(p[0]) ? [...(p[0] as number[])] : [...(p as number[])];
    checkTokens(promptTokens, g.tokenizer.vocabSize, "prompt");
  }
  if (promptTokens.length === 0) {
    throw badRequest("the prompt is empty", "prompt");
  }
  checkContext(promptTokens.length, g);
  return { kind: "text", body, promptTokens, options: generateOptions(body, promptTokens, g) };
}

function given<T>(value: T | null | undefined): value is T {
  return value !== undefined && value !== null;
}

/**
 * The sampling fields as generation options. Without max_tokens the reply may fill the context
 * left; a max_tokens that cannot fit beside the prompt is a 400 with the numbers (OpenAI's
 * context_length_exceeded), not a reply cut short without saying so.
 */
function generateOptions(
  body: SamplingBody,
  promptTokens: readonly number[],
  g: TextGenerator,
): Job["options"] {
  const ctx = g.model.contextLength;
  const room = ctx - promptTokens.length;
  const nPredict = given(body.n_predict) && body.n_predict > 0 ? body.n_predict : undefined;
  const openAi = body.max_completion_tokens ?? body.max_tokens;
  if (given(openAi) && given(body.n_predict) && body.n_predict !== openAi) {
    throw badRequest(
      `n_predict ${body.n_predict} and ${given(body.max_completion_tokens) ? "max_completion_tokens" : "max_tokens"} ${openAi} disagree; give one`,
      "n_predict",
    );
  }
  const explicit = openAi ?? nPredict;
  if (given(explicit) && explicit > room) {
    const param = given(body.max_completion_tokens)
      ? "max_completion_tokens"
      : given(body.max_tokens)
        ? "max_tokens"
        : "n_predict";
    throw new ApiError(
      400,
      "invalid_request_error",
      `the context holds ${ctx} tokens, but ${promptTokens.length + explicit} were requested (${promptTokens.length} in the prompt, ${explicit} in ${param}): lower ${param} to at most ${room}, shorten the prompt, or start the server with a larger -c`,
      {
        param,
        code: "context_length_exceeded",
        extra: { n_prompt_tokens: promptTokens.length, n_ctx: ctx, [param]: explicit },
      },
    );
  }
  const asked = explicit ?? room;
  const bias: Record<number, number> = {};
  for (const [k, v] of Object.entries(body.logit_bias ?? {})) {
    if (Number(k) >= g.tokenizer.vocabSize) {
      throw badRequest(
        `logit_bias names token ${k}, outside the vocabulary`,
        "logit_bias",
        "invalid_token",
      );
    }
    bias[Number(k)] = v;
  }
  const stop = !given(body.stop) ? [] : typeof body.stop === "string" ? [body.stop] : body.stop;
  return {
    // OpenAI's defaults where they differ from llama.cpp's (temperature 1, top_p 1).
    temperature: body.temperature ?? 1,
    topP: body.top_p ?? 1,
    ...(given(body.top_k) ? { topK: body.top_k } : {}),
    ...(given(body.min_p) ? { minP: body.min_p } : {}),
    ...(given(body.typical_p) ? { typicalP: body.typical_p } : {}),
    ...(given(body.repeat_penalty) ? { repeatPenalty: body.repeat_penalty } : {}),
    ...(given(body.repeat_last_n) ? { repeatLastN: body.repeat_last_n } : {}),
    presencePenalty: body.presence_penalty ?? 0,
    frequencyPenalty: body.frequency_penalty ?? 0,
    ...(given(body.seed) && body.seed !== -1 ? { seed: body.seed % 2 ** 32 } : {}),
    logitBias: bias,
    maxTokens: Math.min(asked, room),
    stop,
    ignoreEos: body.ignore_eos === true,
    cachePrompt: body.cache_prompt !== false,
  };
}
