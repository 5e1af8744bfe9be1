/**
 * Chat prompts: the model's own Jinja template (`tokenizer.chat_template`) rendered with
 * @huggingface/jinja, or, when the file has none, the BitNet b1.58 2B-4T format.
 */
import { Template } from "@huggingface/jinja";
import { TokenizerError, TokenizerErrorCode } from "./errors";

export interface ChatMessage {
  readonly role: string;
  readonly content: string;
}

export interface ChatTemplateOptions {
  /** Append the assistant prefix so the model answers next (default true). */
  readonly addGenerationPrompt?: boolean;
  /**
   * "template" (default): the file's template, or the 2B-4T format when it has none;
   * "bitnet-2b": always the 2B-4T format; "bitnet.cpp": llama-cli's built-in bitnet format.
   */
  readonly format?: "template" | "bitnet-2b" | "bitnet.cpp";
}

/**
 * The 2B-4T format (HF tokenizer_config.json): BOS, then `Role: content<|eot_id|>` per message
 * with the role capitalised and the content trimmed, then `Assistant: `.
 */
export function renderBitnet2b(
  messages: readonly ChatMessage[],
  bosToken: string,
  addGenerationPrompt: boolean,
): string {
  let out = bosToken;
  for (const m of messages) {
    const role = m.role.charAt(0).toUpperCase() + m.role.slice(1).toLowerCase();
    out += `${role}: ${m.content.trim()}<|eot_id|>`;
  }
  return addGenerationPrompt ? `${out}Assistant: ` : out;
}

/**
 * bitnet.cpp's `llama-cli -cnv` format: `System: ` + content (no terminator), `User: ` +
 * content + `<|eot_id|>Assistant: `, assistant content as is.
 */
export function renderBitnetCpp(messages: readonly ChatMessage[], bosToken: string): string {
  let out = bosToken;
  for (const m of messages) {
    if (m.role === "system") {
      out += `System: ${m.content}`;
    } else if (m.role === "user") {
      out += `User: ${m.content}<|eot_id|>Assistant: `;
    } else {
      out += m.content;
    }
  }
  return out;
}

const compiled = new Map<string, Template>();

export function renderChatTemplate(
  template: string | undefined,
  messages: readonly ChatMessage[],
  tokens: { bos: string; eos: string },
  options: ChatTemplateOptions = {},
): string {
  const addGenerationPrompt = options.addGenerationPrompt ?? true;
  const format = options.format ?? "template";
  if (format === "bitnet.cpp") {
    return renderBitnetCpp(messages, tokens.bos);
  }
  if (format === "bitnet-2b" || template === undefined) {
    return renderBitnet2b(messages, tokens.bos, addGenerationPrompt);
  }
  try {
    let t = compiled.get(template);
    if (t === undefined) {
      t = new Template(template);
      compiled.set(template, t);
    }
    return t.render({
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      add_generation_prompt: addGenerationPrompt,
      bos_token: tokens.bos,
      eos_token: tokens.eos,
    });
  } catch (error) {
    throw new TokenizerError(
      TokenizerErrorCode.TEMPLATE,
      `could not render the chat template - ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
}
