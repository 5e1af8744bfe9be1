/**
 * Drafters for speculative decoding: cheap guesses of the next tokens, which the target model
 * then checks all at once in one batched step (one read of its weights for several tokens).
 * Whatever a drafter proposes, the output is the target's (Sampler.verify): a bad draft costs
 * time, never correctness.
 *
 * - PromptLookupDrafter: the tokens that followed the latest earlier occurrence of the context's
 *   last n-gram (llama.cpp's prompt lookup): free, and right often on grounded tasks
 *   (summarizing, editing, quoting a given text), where the reply copies spans of the prompt.
 * - ModelDrafter: a small model with the same vocabulary decoding greedily ahead.
 */
import type { CompiledModel } from "@bitnet-ts/engine-core";
import { GenerationError, GenerationErrorCode } from "./errors";

/** One generation's drafting state. */
export interface DraftSession {
  /**
   * Up to `max` tokens likely to follow `context` (the prompt and every token accepted so far).
   * May return fewer, or none.
   */
  propose(context: readonly number[], max: number): readonly number[] | Promise<readonly number[]>;
  /** The generation ended: free what the session holds. */
  end(): void;
}

export interface Drafter {
  /** For logs and receipts: "lookup", "model:<name>". */
  readonly name: string;
  /** Most tokens drafted per step. */
  readonly maxDraft: number;
  /** The vocabulary size its tokens come from, when it has a model (checked against the target's). */
  readonly vocabSize?: number;
  begin(prompt: readonly number[]): DraftSession;
}

function checkMaxDraft(maxDraft: number): number {
  if (!Number.isInteger(maxDraft) || maxDraft < 1 || maxDraft > 64) {
    throw new GenerationError(
      GenerationErrorCode.BAD_OPTION,
      `could not draft - maxDraft = ${maxDraft}; expected an integer from 1 to 64.`,
    );
  }
  return maxDraft;
}

export interface PromptLookupOptions {
  /** Most tokens drafted per step (default 8). */
  readonly maxDraft?: number;
  /** Longest n-gram matched (default 4); longer matches are tried first. */
  readonly ngramMax?: number;
  /** Shortest n-gram matched (default 2: a single token matches too often to be worth a row). */
  readonly ngramMin?: number;
}

/** The continuation of the most recent earlier occurrence of the context's last n tokens. */
export function lookupDraft(
  context: readonly number[],
  max: number,
  ngramMin: number,
  ngramMax: number,
): number[] {
  const n = context.length;
  for (let g = Math.min(ngramMax, n - 1); g >= ngramMin; g--) {
    // Candidate starts j of an earlier occurrence of context[n-g, n), latest first; the match
    // must leave at least one token after it (j + g < n).
    for (let j = n - g - 1; j >= 0; j--) {
      let k = 0;
      while (k < g && context[j + k] === context[n - g + k]) {
        k++;
      }
      if (k === g) {
        return context.slice(j + g, Math.min(j + g + max, n)) as number[];
      }
    }
  }
  return [];
}

export class PromptLookupDrafter implements Drafter {
  readonly name = "lookup";
  readonly maxDraft: number;
  readonly ngramMin: number;
  readonly ngramMax: number;

  constructor(options: PromptLookupOptions = {}) {
    this.maxDraft = checkMaxDraft(options.maxDraft ?? 8);
    this.ngramMin = options.ngramMin ?? 2;
    this.ngramMax = options.ngramMax ?? 4;
    if (
      !Number.isInteger(this.ngramMin) ||
      !Number.isInteger(this.ngramMax) ||
      this.ngramMin < 1 ||
      this.ngramMax < this.ngramMin
    ) {
      throw new GenerationError(
        GenerationErrorCode.BAD_OPTION,
        `could not draft - n-grams from ${this.ngramMin} to ${this.ngramMax}; expected 1 ≤ ngramMin ≤ ngramMax.`,
      );
    }
  }

  begin(): DraftSession {
    return {
      propose: (context, max) =>
        lookupDraft(context, Math.min(max, this.maxDraft), this.ngramMin, this.ngramMax),
      end: () => {},
    };
  }
}

export interface ModelDrafterOptions {
  /** Most tokens drafted per step (default 6). */
  readonly maxDraft?: number;
  /** For `name` (default "model"). */
  readonly label?: string;
}

/**
 * A draft model: its own KV cache per generation, kept in step with the accepted tokens (cut
 * back to the common prefix, the rest evaluated), then greedy decoding of up to `max` tokens.
 */
export class ModelDrafter implements Drafter {
  readonly name: string;
  readonly maxDraft: number;
  readonly vocabSize: number;
  readonly model: CompiledModel;

  constructor(model: CompiledModel, options: ModelDrafterOptions = {}) {
    this.model = model;
    this.maxDraft = checkMaxDraft(options.maxDraft ?? 6);
    this.name = `model:${options.label ?? "model"}`;
    this.vocabSize = model.description.hparams.vocabSize;
  }

  begin(): DraftSession {
    const model = this.model;
    const sequence = model.createSequence();
    /** The tokens whose KV the draft sequence holds. */
    const evaluated: number[] = [];
    let ended = false;
    const step = async (tokens: readonly number[]): Promise<number> => {
      const out = await model.step([{ sequence, tokens, logits: "last", reduce: "argmax" }]);
      evaluated.push(...tokens);
      return out.runs[0]!.argmax![0]!;
    };
    return {
      propose: async (context, max) => {
        if (ended) {
          return [];
        }
        let common = 0;
        while (
          common < evaluated.length &&
          common < context.length &&
          evaluated[common] === context[common]
        ) {
          common++;
        }
        // At least the last context token is evaluated again: its row is the first draft.
        common = Math.min(common, context.length - 1);
        if (common < evaluated.length) {
          model.truncateSequence(sequence, common);
          evaluated.length = common;
        }
        const room = model.contextLength - context.length;
        const n = Math.min(max, this.maxDraft, room);
        if (n <= 0) {
          return [];
        }
        const draft = [await step(context.slice(common))];
        while (draft.length < n && !ended) {
          draft.push(await step([draft[draft.length - 1]!]));
        }
        return draft;
      },
      end: () => {
        ended = true;
        try {
          model.freeSequence(sequence);
        } catch {
          // the draft model was disposed
        }
      },
    };
  }
}
