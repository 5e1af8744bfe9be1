/** POST /tokenize and /detokenize (llama.cpp's shapes). */
import type { FastifyInstance } from "fastify";
import type { ServerContext } from "../context";
import { badRequest } from "../errors";
import { parseDetokenize, parseTokenize } from "../schemas";

export function registerTokenizeRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.post("/tokenize", async (request) => {
    const body = parseTokenize(request.body);
    const g = ctx.lifecycle.loaded();
    const tokens = g.tokenizer.encode(body.content, {
      addBos: body.add_special ?? false,
      parseSpecial: body.parse_special ?? true,
    });
    if (!body.with_pieces) {
      return { tokens };
    }
    const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
    return {
      tokens: tokens.map((t) => {
        const bytes = g.tokenizer.tokenBytes(t, { special: true });
        try {
          return { id: t, piece: decoder.decode(bytes) };
        } catch {
          return { id: t, piece: [...bytes] }; // not valid UTF-8 on its own (part of a character)
        }
      }),
    };
  });

  app.post("/detokenize", async (request) => {
    const body = parseDetokenize(request.body);
    const g = ctx.lifecycle.loaded();
    const bad = body.tokens.find((t) => t < 0 || t >= g.tokenizer.vocabSize);
    if (bad !== undefined) {
      throw badRequest(
        `token ${bad} is outside the vocabulary (0..${g.tokenizer.vocabSize - 1})`,
        "tokens",
        "invalid_token",
      );
    }
    return { content: g.tokenizer.decode(body.tokens) };
  });
}
