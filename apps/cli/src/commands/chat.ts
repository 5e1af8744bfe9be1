/**
 * `bitnet chat`: an interactive conversation through the model's chat template. Ctrl-C stops the
 * current reply; Ctrl-D (or /exit) quits; /reset starts over. When the conversation fills the
 * context, a message is refused with the numbers, or with --context-shift the oldest turns are
 * dropped (the system prompt stays) and a line on stderr says so.
 */
import * as readline from "node:readline";
import { isBitnetError } from "@bitnet-ts/errors";
import { ChatSession, GenerationErrorCode } from "@bitnet-ts/generation";
import { type ModelOptions, type SamplingOptions, samplingSettings } from "../options";
import type { CliIo } from "../program";
import { type DraftOptions, loadDrafter, loadGenerator } from "./load";

export interface ChatOptions extends ModelOptions, SamplingOptions, DraftOptions {
  system?: string;
  nPredict?: number;
  contextShift?: boolean;
}

export async function runChat(
  options: ChatOptions,
  io: CliIo,
  input: NodeJS.ReadableStream = process.stdin,
): Promise<void> {
  const { generator } = await loadGenerator(options, io, true);
  const draft = await loadDrafter(options, generator, io).catch(async (error: unknown) => {
    await generator.dispose();
    throw error;
  });
  const session = new ChatSession(generator, {
    ...(options.system === undefined ? {} : { systemPrompt: options.system }),
    contextShift: options.contextShift === true,
    onContextShift: (shift) =>
      io.stderr(
        `bitnet: the context was full: dropped the ${shift.droppedMessages} oldest messages (${shift.tokensBefore} → ${shift.tokensAfter} tokens; ${shift.reserved} kept free for the reply)\n`,
      ),
  });
  const rl = readline.createInterface({ input, terminal: false });
  io.stderr(
    generator.tokenizer.vocab.chatTemplate === undefined
      ? "bitnet chat: the model has no chat template (tokenizer.chat_template); using the BitNet b1.58 2B-4T format (User: …<|eot_id|>Assistant: ).\n"
      : "bitnet chat: using the model's chat template (tokenizer.chat_template).\n",
  );
  io.stderr("bitnet chat: type a message; /reset starts over, /exit or Ctrl-D quits.\n");
  let current: { cancel(): void } | undefined;
  const onSigint = (): void => {
    if (current !== undefined) {
      current.cancel();
    } else {
      rl.close();
    }
  };
  process.on("SIGINT", onSigint);
  try {
    io.stdout("> ");
    for await (const line of rl) {
      const text = line.trim();
      if (text === "/exit" || text === "/quit") {
        break;
      }
      if (text === "/reset") {
        session.reset();
        io.stdout("(conversation reset)\n> ");
        continue;
      }
      if (text.length === 0) {
        io.stdout("> ");
        continue;
      }
      // "/word" is a command; an unknown one is a typo more often than a message ("//…" sends
      // a message that starts with "/").
      if (/^\/[A-Za-z]+$/.test(text)) {
        io.stderr(
          `bitnet chat: unknown command ${text} (commands: /reset, /exit, /quit; start a message with // to send it as text)\n`,
        );
        io.stdout("> ");
        continue;
      }
      const message = text.startsWith("//") ? text.slice(1) : text;
      let reply: ReturnType<ChatSession["prompt"]>;
      try {
        reply = session.prompt(message, {
          ...samplingSettings(options),
          maxTokens: options.nPredict ?? 256,
          ...(draft.drafter === undefined ? {} : { draft: draft.drafter }),
        });
      } catch (error) {
        if (isBitnetError(error) && error.code === GenerationErrorCode.PROMPT_TOO_LONG) {
          io.stderr(`bitnet: ${error.message}\n`);
          io.stdout("> ");
          continue;
        }
        throw error;
      }
      current = reply;
      for await (const piece of reply) {
        io.stdout(piece);
      }
      const result = await reply.result;
      current = undefined;
      io.stdout(result.finishReason === "abort" ? " [stopped]\n> " : "\n> ");
    }
    io.stdout("\n");
  } finally {
    process.removeListener("SIGINT", onSigint);
    rl.close();
    session.dispose();
    await draft.dispose();
    await generator.dispose();
  }
}
