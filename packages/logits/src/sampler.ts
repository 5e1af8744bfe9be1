/**
 * A sampler with llama.cpp's default chain (the bitnet.cpp fork's order):
 * logit bias → penalties → top-k → typical → top-p → min-p → temperature → softmax → draw;
 * temperature ≤ 0 means greedy (after bias and penalties).
 */
import { BitnetError } from "@bitnet-ts/errors";
import { Candidates } from "./candidates";
import { Mt19937 } from "./mt19937";
import {
  applyLogitBias,
  applyPenalties,
  argmax,
  minP,
  temperature,
  topK,
  topP,
  typical,
} from "./processors";

export interface SamplingSettings {
  /** Default 0.8; ≤ 0 samples greedily. */
  readonly temperature?: number;
  /** Default 40; ≤ 0 keeps all. */
  readonly topK?: number;
  /** Default 0.95; 1 disables. */
  readonly topP?: number;
  /** Default 0.05; 0 disables. */
  readonly minP?: number;
  /** Locally typical sampling; default 1 (off). */
  readonly typicalP?: number;
  /** Default 1 (off). */
  readonly repeatPenalty?: number;
  /** Tokens the penalties look back over; default 64; -1 = the whole context; 0 = off. */
  readonly repeatLastN?: number;
  readonly frequencyPenalty?: number;
  readonly presencePenalty?: number;
  /** Additive logit biases by token id. */
  readonly logitBias?: ReadonlyMap<number, number> | Readonly<Record<number, number>>;
  /** 32-bit seed; undefined or 0xFFFFFFFF (llama.cpp's LLAMA_DEFAULT_SEED) picks a random one. */
  readonly seed?: number;
  /** Minimum candidates the filters keep; default 0 (llama.cpp's min_keep). */
  readonly minKeep?: number;
  /** Penalize the newline token too (default false, as llama.cpp's penalize_nl). */
  readonly penalizeNewline?: boolean;
}

export const DEFAULT_SAMPLING: Required<Omit<SamplingSettings, "logitBias" | "seed">> = {
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  minP: 0.05,
  typicalP: 1,
  repeatPenalty: 1,
  repeatLastN: 64,
  frequencyPenalty: 0,
  presencePenalty: 0,
  minKeep: 0,
  penalizeNewline: false,
};

export class SamplingError extends BitnetError {
  constructor(message: string) {
    super("SAMPLING_INVALID", message);
  }
}

/** Validates settings; returns a clear error naming the bad field. */
export function validateSampling(s: SamplingSettings): void {
  const check = (field: string, ok: boolean, expected: string): void => {
    if (!ok) {
      throw new SamplingError(
        `could not create the sampler - ${field} = ${String((s as Record<string, unknown>)[field])} is invalid.\nExpected ${expected}.`,
      );
    }
  };
  const finite = (v: number | undefined) => v === undefined || Number.isFinite(v);
  check("temperature", finite(s.temperature), "a finite number (≤ 0 for greedy)");
  check("topK", s.topK === undefined || Number.isInteger(s.topK), "an integer (≤ 0 keeps all)");
  check("topP", s.topP === undefined || (s.topP >= 0 && s.topP <= 1), "a number from 0 to 1");
  check("minP", s.minP === undefined || (s.minP >= 0 && s.minP <= 1), "a number from 0 to 1");
  check(
    "typicalP",
    s.typicalP === undefined || (s.typicalP >= 0 && s.typicalP <= 1),
    "a number from 0 to 1",
  );
  check(
    "repeatPenalty",
    s.repeatPenalty === undefined || (Number.isFinite(s.repeatPenalty) && s.repeatPenalty > 0),
    "a positive number",
  );
  check(
    "repeatLastN",
    s.repeatLastN === undefined || (Number.isInteger(s.repeatLastN) && s.repeatLastN >= -1),
    "an integer ≥ -1",
  );
  check("frequencyPenalty", finite(s.frequencyPenalty), "a finite number");
  check("presencePenalty", finite(s.presencePenalty), "a finite number");
  check(
    "seed",
    s.seed === undefined || (Number.isInteger(s.seed) && s.seed >= -1 && s.seed <= 0xffffffff),
    "an integer from 0 to 4294967295 (or -1 for random)",
  );
  check(
    "minKeep",
    s.minKeep === undefined || (Number.isInteger(s.minKeep) && s.minKeep >= 0),
    "a non-negative integer",
  );
}

/**
 * A random seed from 0 to 0xfffffffe: 0xffffffff (like -1) means "random", so a drawn seed of
 * 0xffffffff would not replay. Web Crypto, so it runs in browsers as in Node.
 */
function randomSeed(): number {
  const word = new Uint32Array(1);
  do {
    globalThis.crypto.getRandomValues(word);
  } while (word[0] === 0xffffffff);
  return word[0]!;
}

export interface SamplerOptions {
  /** The newline token (exempt from penalties unless penalizeNewline). */
  readonly newlineToken?: number;
  /** Context length (for repeatLastN = -1). */
  readonly contextLength?: number;
  /** The model's vocabulary size: with it, {@link Sampler.reduction} can ask for a top-k. */
  readonly vocabSize?: number;
}

export class Sampler {
  readonly settings: Required<Omit<SamplingSettings, "logitBias" | "seed">>;
  /** The seed actually used (a random one when none was given), for receipts and replay. */
  readonly seed: number;
  readonly #bias: ReadonlyMap<number, number>;
  readonly #options: SamplerOptions;
  #rng: Mt19937;
  #history: number[] = [];
  #candidates: Candidates | undefined;

  constructor(settings: SamplingSettings = {}, options: SamplerOptions = {}) {
    validateSampling(settings);
    const defined = Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined));
    this.settings = { ...DEFAULT_SAMPLING, ...defined } as Required<
      Omit<SamplingSettings, "logitBias" | "seed">
    >;
    this.seed =
      settings.seed === undefined || settings.seed === -1 || settings.seed === 0xffffffff
        ? randomSeed()
        : settings.seed >>> 0;
    this.#rng = new Mt19937(this.seed);
    const bias = settings.logitBias;
    this.#bias =
      bias instanceof Map
        ? bias
        : new Map(Object.entries(bias ?? {}).map(([k, v]) => [Number(k), v as number]));
    this.#options = options;
  }

  /** Records a token (prompt or generated) for the repetition penalties. */
  accept(token: number): void {
    this.#history.push(token);
    const keep = Math.max(this.#window(), 0);
    if (this.#history.length > keep * 2 + 1024) {
      this.#history = this.#history.slice(-keep);
    }
  }

  /** Forgets the history and restarts the random stream from the seed. */
  reset(): void {
    this.#history = [];
    this.#rng = new Mt19937(this.seed);
  }

  #window(): number {
    const n = this.settings.repeatLastN;
    return n === -1 ? (this.#options.contextLength ?? this.#history.length) : n;
  }

  /** Whether the repetition penalties can change a logit. */
  get #penalized(): boolean {
    const s = this.settings;
    return (
      s.repeatLastN !== 0 &&
      (s.repeatPenalty !== 1 || s.frequencyPenalty !== 0 || s.presencePenalty !== 0)
    );
  }

  /**
   * What of a row of logits this sampler needs, for a backend that can reduce rows itself:
   * "argmax" when the next token is always the largest logit (greedy, with no logit bias and no
   * penalties that could reorder the top); `{ topK }` when the chain starts by keeping the top-k
   * of the raw logits (top-k on, no bias, no penalties, and a vocabulary size given that k is
   * below), so a row's best `topK` candidates draw exactly what the whole row would
   * ({@link sampleTop}); otherwise "full".
   */
  get reduction(): "argmax" | "full" | { readonly topK: number } {
    const s = this.settings;
    if (this.#bias.size > 0 || this.#penalized) {
      return "full";
    }
    if (s.temperature <= 0) {
      return "argmax";
    }
    const k = Math.max(s.topK, s.minKeep);
    const vocab = this.#options.vocabSize;
    return s.topK > 0 && vocab !== undefined && k < vocab ? { topK: k } : "full";
  }

  /**
   * The chain up to the final distribution: a greedy token (temperature ≤ 0), or the candidates
   * left with their probabilities (unnormalized sum in `total`).
   */
  #distribution(logits: Float32Array): { greedy: number } | { c: Candidates; total: number } {
    const s = this.settings;
    // One list per sampler, refilled each call: nothing of it outlives sample() / verify().
    const c = this.#candidates?.reset(logits) ?? new Candidates(logits);
    this.#candidates = c;
    applyLogitBias(c, this.#bias);
    const window = this.#penalized ? Math.min(this.#window(), this.#history.length) : 0;
    if (window > 0) {
      const counts = new Map<number, number>();
      for (let i = this.#history.length - window; i < this.#history.length; i++) {
        const t = this.#history[i]!;
        counts.set(t, (counts.get(t) ?? 0) + 1);
      }
      applyPenalties(
        c,
        counts,
        { repeat: s.repeatPenalty, frequency: s.frequencyPenalty, presence: s.presencePenalty },
        s.penalizeNewline ? undefined : this.#options.newlineToken,
      );
    }
    if (s.temperature <= 0) {
      return { greedy: c.ids[argmax(c.logits.subarray(0, c.size))]! };
    }
    return this.#filtered(c);
  }

  /** The chain from top-k on: what is left to draw from, and its unnormalized total. */
  #filtered(c: Candidates): { c: Candidates; total: number } {
    const s = this.settings;
    topK(c, s.topK, s.minKeep);
    typical(c, s.typicalP, s.minKeep);
    topP(c, s.topP, Math.max(1, s.minKeep));
    minP(c, s.minP, Math.max(1, s.minKeep));
    temperature(c, s.temperature);
    c.softmax();
    let total = 0;
    for (let i = 0; i < c.size; i++) {
      total += c.probs[i]!;
    }
    return { c, total };
  }

  /** Draws from the candidates in order, leaving out `skip` (dist: a categorical draw). */
  #draw(c: Candidates, total: number, skip = -1): number {
    const u = this.#rng.nextDouble();
    let acc = 0;
    let last = -1;
    for (let i = 0; i < c.size; i++) {
      if (c.ids[i] === skip) {
        continue;
      }
      acc += c.probs[i]!;
      last = i;
      if (u * total < acc) {
        return c.ids[i]!;
      }
    }
    return c.ids[last]!;
  }

  /** Picks the next token from a row of logits. */
  sample(logits: Float32Array): number {
    const d = this.#distribution(logits);
    return "greedy" in d ? d.greedy : this.#draw(d.c, d.total);
  }

  /**
   * Picks the next token from a row's best candidates, ranked best first (higher logit, ties by
   * lower id): a backend's reduction of the row to the `{ topK }` that {@link reduction} asks
   * for. It draws the token `sample` would draw from the whole row, consuming the random stream
   * alike (rows holding NaN aside, which the reduction ranks last). Throws SamplingError when
   * `reduction` is not a top-k or fewer candidates than it asks for are given.
   */
  sampleTop(ids: Int32Array, logits: Float32Array): number {
    const r = this.reduction;
    if (typeof r !== "object" || ids.length < r.topK || logits.length < ids.length) {
      throw new SamplingError(
        `could not sample from the top candidates - this sampler needs ${typeof r === "object" ? `the row's best ${r.topK}` : "the whole row"} (its reduction), got ${ids.length} candidates.`,
      );
    }
    const c =
      this.#candidates?.resetTop(ids, logits) ??
      new Candidates(new Float32Array(0)).resetTop(ids, logits);
    this.#candidates = c;
    const { total } = this.#filtered(c);
    return this.#draw(c, total);
  }

  /**
   * Speculative decoding's check of a drafted token against the target model's row, so that the
   * token returned is distributed exactly as `sample` would draw it, whatever the draft: with
   * probability p(draft) the draft is accepted; otherwise a token is drawn from p with the draft
   * left out (renormalized), which is the standard rejection scheme for a draft proposed with
   * certainty (a lookup, or a draft model's greedy choice). Greedy: accepted when the draft is
   * the argmax. The random stream advances differently from `sample`'s, so a seed gives other
   * (equally distributed) tokens with drafting than without.
   */
  verify(logits: Float32Array, draft: number): { token: number; accepted: boolean } {
    const d = this.#distribution(logits);
    if ("greedy" in d) {
      return { token: d.greedy, accepted: d.greedy === draft };
    }
    const { c, total } = d;
    let pDraft = 0;
    for (let i = 0; i < c.size; i++) {
      if (c.ids[i] === draft) {
        pDraft = c.probs[i]! / total;
        break;
      }
    }
    if (pDraft > 0 && this.#rng.nextDouble() < pDraft) {
      return { token: draft, accepted: true };
    }
    if (pDraft > 0 && c.size === 1) {
      return { token: draft, accepted: true }; // nothing else can be drawn
    }
    return { token: this.#draw(c, total - pDraft * total, draft), accepted: false };
  }
}
