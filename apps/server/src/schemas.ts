/**
 * Request bodies, validated with zod. Unknown OpenAI fields that do not change what is computed
 * (user, metadata, store, …) are ignored; fields we cannot honour (n > 1, tools, JSON response
 * formats, logprobs, llama-server's grammar, json_schema, mirostat, …) are a 400 naming the
 * parameter, never silently dropped.
 */
import { z } from "zod";
import { ApiError, badRequest } from "./errors";

const samplingFields = {
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  top_k: z.number().int().min(0).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  typical_p: z.number().min(0).max(1).nullish(),
  repeat_penalty: z.number().min(0).max(10).nullish(),
  repeat_last_n: z.number().int().min(-1).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  seed: z.number().int().min(-1).max(Number.MAX_SAFE_INTEGER).nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  max_completion_tokens: z.number().int().min(1).nullish(),
  stop: z.union([z.string().min(1), z.array(z.string().min(1)).max(4)]).nullish(),
  logit_bias: z
    .record(z.string().regex(/^\d+$/, "keys must be token ids"), z.number().min(-100).max(100))
    .nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
  n: z.literal(1, { message: "only n = 1 is supported" }).nullish(),
  logprobs: z.literal(false, { message: "logprobs are not supported" }).nullish(),
  top_logprobs: z.null().optional(),
  ignore_eos: z.boolean().nullish(),
  /** llama-server's: start from the prompt cache and keep this request's KV there (default true). */
  cache_prompt: z.boolean().nullish(),
  /** llama-server's max_tokens; -1: until the context is full or the model stops. */
  n_predict: z
    .number()
    .int()
    .min(-1)
    .refine((n) => n !== 0, "n_predict must be -1 (no limit) or at least 1")
    .nullish(),
  // llama-server's samplers and constraints that we do not have: refused when they would
  // change the output, so that a client never gets unconstrained text it believes constrained.
  grammar: z.literal("", { message: "grammar-constrained sampling is not supported" }).nullish(),
  json_schema: z.null({ message: "JSON-schema-constrained sampling is not supported" }).optional(),
  mirostat: z.literal(0, { message: "mirostat sampling is not supported" }).nullish(),
  n_probs: z.literal(0, { message: "token probabilities (n_probs) are not supported" }).nullish(),
  dynatemp_range: z.literal(0, { message: "dynamic temperature is not supported" }).nullish(),
  xtc_probability: z.literal(0, { message: "XTC sampling is not supported" }).nullish(),
  dry_multiplier: z.literal(0, { message: "DRY sampling is not supported" }).nullish(),
};

const contentPart = z.looseObject({
  type: z.literal("text", { message: 'only "text" content parts are supported' }),
  text: z.string(),
});

const message = z.looseObject({
  role: z.enum(["system", "developer", "user", "assistant"], {
    message: 'role must be "system", "developer", "user" or "assistant"',
  }),
  content: z.union([z.string(), z.array(contentPart)]).nullish(),
  name: z.string().optional(),
});

const chatBody = z.looseObject({
  model: z.string().optional(),
  messages: z.array(message).min(1, "messages must not be empty"),
  ...samplingFields,
  tools: z.undefined({ message: "tools are not supported" }).optional(),
  tool_choice: z
    .union([z.literal("none"), z.undefined()], { message: "tools are not supported" })
    .optional(),
  response_format: z
    .object({
      type: z.literal("text", { message: 'only response_format {"type": "text"} is supported' }),
    })
    .nullish(),
});

const tokenArray = z.array(z.number().int().min(0)).min(1, "the prompt must not be empty");

const completionBody = z.looseObject({
  model: z.string().optional(),
  prompt: z.union([
    z.string(),
    z.array(z.string()).length(1, "send one prompt per request"),
    tokenArray,
    z.array(tokenArray).length(1, "send one prompt per request"),
  ]),
  echo: z.literal(false, { message: "echo is not supported" }).nullish(),
  suffix: z.null({ message: "suffix is not supported" }).optional(),
  best_of: z.literal(1, { message: "only best_of = 1 is supported" }).nullish(),
  ...samplingFields,
});

const tokenizeBody = z.looseObject({
  content: z.string(),
  add_special: z.boolean().optional(),
  parse_special: z.boolean().optional(),
  with_pieces: z.boolean().optional(),
});

const detokenizeBody = z.looseObject({ tokens: z.array(z.number().int()) });

export type ChatBody = z.infer<typeof chatBody>;
export type CompletionBody = z.infer<typeof completionBody>;
export type TokenizeBody = z.infer<typeof tokenizeBody>;
export type DetokenizeBody = z.infer<typeof detokenizeBody>;
export type SamplingBody = Pick<ChatBody, keyof typeof samplingFields>;

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw badRequest("the request body must be a JSON object", null, "invalid_body");
  }
  const result = schema.safeParse(body);
  if (result.success) {
    return result.data;
  }
  const issue = result.error.issues[0]!;
  const param = issue.path.length > 0 ? issue.path.map(String).join(".") : null;
  let at: unknown = body;
  for (const key of issue.path) {
    at =
      at !== null && typeof at === "object"
        ? (at as Record<PropertyKey, unknown>)[key as PropertyKey]
        : undefined;
  }
  const missing = issue.code === "invalid_type" && at === undefined;
  throw badRequest(
    missing
      ? `missing required parameter '${param}'`
      : `invalid '${param ?? "body"}': ${issue.message}`,
    param,
    missing ? "missing_required_parameter" : "invalid_value",
  );
}

export function parseChat(body: unknown): ChatBody {
  const chat = parse(chatBody, body);
  for (const [i, m] of chat.messages.entries()) {
    if (m.role !== "assistant" && (m.content === undefined || m.content === null)) {
      throw badRequest(`messages[${i}] (${m.role}) has no content`, `messages.${i}.content`);
    }
  }
  return chat;
}

export function parseCompletion(body: unknown): CompletionBody {
  return parse(completionBody, body);
}

export function parseTokenize(body: unknown): TokenizeBody {
  return parse(tokenizeBody, body);
}

export function parseDetokenize(body: unknown): DetokenizeBody {
  return parse(detokenizeBody, body);
}

/** A message's text (content parts joined). */
export function messageText(content: ChatBody["messages"][number]["content"]): string {
  if (content === undefined || content === null) {
    return "";
  }
  return typeof content === "string" ? content : content.map((p) => p.text).join("");
}

export function checkTokens(tokens: readonly number[], vocab: number, param: string): void {
  const bad = tokens.find((t) => t >= vocab);
  if (bad !== undefined) {
    throw new ApiError(
      400,
      "invalid_request_error",
      `Prompt contains invalid tokens: ${bad} is outside the vocabulary (0..${vocab - 1})`,
      {
        param,
        code: "invalid_token",
      },
    );
  }
}
