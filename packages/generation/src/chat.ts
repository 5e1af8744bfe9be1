/**
 * Chat sessions: the conversation is rendered with the model's chat template on every turn,
 * and the KV cache is reused for the longest common prefix with what is already evaluated.
 */
import type { ChatMessage, ChatTemplateOptions } from "@bitnet-ts/tokenizers";
import type { GenerateOptions, Generation, GenerationResult, TextGenerator } from "./generator";

export interface ChatSessionOptions {
  /** A system message that opens the conversation. */
  readonly systemPrompt?: string;
  readonly template?: ChatTemplateOptions;
}

export class ChatSession {
  readonly generator: TextGenerator;
  readonly messages: ChatMessage[] = [];
  readonly #template: ChatTemplateOptions;
  #sequence: number | undefined;
  /** Tokens whose keys/values are in the sequence's cache. */
  #cached: number[] = [];
  #busy = false;

  constructor(generator: TextGenerator, options: ChatSessionOptions = {}) {
    this.generator = generator;
    this.#template = options.template ?? {};
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
    this.messages.push({ role: "user", content: text });
    const tokens = this.generator.tokenizer.encodeChat(this.messages, this.#template);
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
    this.#busy = true;
    const generation = this.generator.generateOnSequence(this.#sequence, tokens, reuse, options);
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
