/**
 * Chat sessions: the conversation is rendered with the model's chat template on every turn,
 * and the KV cache is reused for the longest common prefix with what is already evaluated.
 */
import type { ChatMessage, ChatTemplateOptions } from "@bitnet-ts/tokenizers";
import { GenerationError, GenerationErrorCode } from "./errors";
import type { GenerateOptions, Generation, GenerationResult, TextGenerator } from "./generator";

/** What a context shift dropped (ChatSessionOptions.onContextShift). */
export interface ContextShift {
  /** Messages removed from the start of the conversation (whole turns; the system prompt stays). */
  readonly droppedMessages: number;
  /** Tokens of the rendered conversation before and after. */
  readonly tokensBefore: number;
  readonly tokensAfter: number;
  /** The room kept for the reply: min(maxTokens, a quarter of the context), at least 1. */
  readonly reserved: number;
}

export interface ChatSessionOptions {
  /** A system message that opens the conversation. */
  readonly systemPrompt?: string;
  readonly template?: ChatTemplateOptions;
  /**
   * When the conversation no longer leaves room for the reply in the context, drop its oldest
   * turns (a user message and the reply to it; the system prompt stays) until it does, and tell
   * onContextShift. Default false: such a message is rejected with GENERATION_PROMPT_TOO_LONG and
   * the numbers, and the conversation is left as it was.
   */
  readonly contextShift?: boolean;
  /** Called after each context shift with what was dropped (never silently). */
  readonly onContextShift?: (shift: ContextShift) => void;
}

export class ChatSession {
  readonly generator: TextGenerator;
  readonly messages: ChatMessage[] = [];
  readonly #template: ChatTemplateOptions;
  readonly #contextShift: boolean;
  readonly #onContextShift: ((shift: ContextShift) => void) | undefined;
  #sequence: number | undefined;
  /** Tokens whose keys/values are in the sequence's cache. */
  #cached: number[] = [];
  #busy = false;

  constructor(generator: TextGenerator, options: ChatSessionOptions = {}) {
    this.generator = generator;
    this.#template = options.template ?? {};
    this.#contextShift = options.contextShift ?? false;
    this.#onContextShift = options.onContextShift;
    if (options.systemPrompt !== undefined) {
      this.messages.push({ role: "system", content: options.systemPrompt });
    }
  }

  /**
   * Sends a user message and streams the assistant's reply.
   *
   * @example
   * const chat = new ChatSession(generator, { systemPrompt: "You are terse." });
   * for await (const piece of chat.prompt("Hi!")) process.stdout.write(piece);
   */
  prompt(text: string, options: GenerateOptions = {}): Generation {
    if (this.#busy) {
      throw new Error("could not send the message - the previous reply is still being generated.");
    }
    const before = [...this.messages];
    const { messages, tokens } = this.#fit([...before, { role: "user", content: text }], options);
    this.messages.length = 0;
    this.messages.push(...messages);
    const model = this.generator.model;
    if (this.#sequence === undefined) {
      this.#sequence = model.createSequence();
      this.#cached = [];
    }
    let reuse = 0;
    while (
      reuse < this.#cached.length &&
      reuse < tokens.length - 1 &&
      this.#cached[reuse] === tokens[reuse]
    ) {
      reuse++;
    }
    model.truncateSequence(this.#sequence, reuse);
    this.#cached = this.#cached.slice(0, reuse);
    let generation: Generation;
    try {
      generation = this.generator.generateOnSequence(this.#sequence, tokens, reuse, options);
    } catch (error) {
      // The message was not sent: the conversation stays as it was.
      this.messages.length = 0;
      this.messages.push(...before);
      throw error;
    }
    this.#busy = true;
    const sequence = this.#sequence;
    const done = generation.result.then(
      (result: GenerationResult) => {
        this.#busy = false;
        this.messages.push({ role: "assistant", content: result.text });
        this.#cached = [...tokens, ...result.tokens].slice(0, model.sequenceLength(sequence));
        return result;
      },
      (error: unknown) => {
        this.#busy = false;
        this.messages.pop();
        throw error;
      },
    );
    done.catch(() => {});
    return {
      result: done,
      cancel: generation.cancel,
      [Symbol.asyncIterator]: () => generation[Symbol.asyncIterator](),
    };
  }

  /**
   * The conversation as it will be sent, and its tokens: unchanged when it leaves room for the
   * reply; else, with contextShift, its oldest turns dropped until it does.
   */
  #fit(
    messages: ChatMessage[],
    options: GenerateOptions,
  ): { messages: ChatMessage[]; tokens: number[] } {
    const ctx = this.generator.model.contextLength;
    const maxTokens = options.maxTokens ?? 128;
    const reserved = Math.max(1, Math.min(maxTokens === -1 ? 1 : maxTokens, Math.floor(ctx / 4)));
    const encode = (m: ChatMessage[]): number[] =>
      this.generator.tokenizer.encodeChat(m, this.#template);
    let tokens = encode(messages);
    const tokensBefore = tokens.length;
    if (tokens.length + reserved <= ctx) {
      return { messages, tokens };
    }
    if (!this.#contextShift) {
      throw new GenerationError(
        GenerationErrorCode.PROMPT_TOO_LONG,
        `could not send the message - the conversation would have ${tokens.length} tokens and the reply needs room for ${reserved} more, but the context holds ${ctx}; start over (reset), shorten the message, or let the session drop its oldest turns (contextShift, --context-shift).`,
      );
    }
    const first = messages[0]?.role === "system" ? 1 : 0;
    let dropped = 0;
    const kept = [...messages];
    // Drop whole turns from the start: a user message and everything up to the next user message.
    while (tokens.length + reserved > ctx && kept.length - first > 1) {
      let end = first + 1;
      while (end < kept.length - 1 && kept[end]!.role !== "user") {
        end++;
      }
      dropped += end - first;
      kept.splice(first, end - first);
      tokens = encode(kept);
    }
    if (tokens.length + reserved > ctx) {
      throw new GenerationError(
        GenerationErrorCode.PROMPT_TOO_LONG,
        `could not send the message - even with every earlier turn dropped it has ${tokens.length} tokens and the reply needs room for ${reserved} more, but the context holds ${ctx}; shorten the message or the system prompt.`,
      );
    }
    this.#onContextShift?.({
      droppedMessages: dropped,
      tokensBefore,
      tokensAfter: tokens.length,
      reserved,
    });
    return { messages: kept, tokens };
  }

  /** Forgets the conversation (keeps the system prompt) and frees the cache. */
  reset(): void {
    const system = this.messages.find((m) => m.role === "system");
    this.messages.length = 0;
    if (system !== undefined) {
      this.messages.push(system);
    }
    this.dispose();
  }

  dispose(): void {
    if (this.#sequence !== undefined) {
      this.generator.model.freeSequence(this.#sequence);
      this.#sequence = undefined;
      this.#cached = [];
    }
  }
}
