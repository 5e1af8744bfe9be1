/**
 * Prompt cache: KV caches of finished generations kept for later requests that start with the
 * same tokens (a shared system prompt, the earlier turns of a chat). A new generation starts
 * from the cached sequence with the longest common prefix and evaluates only the rest.
 *
 * - An entry whose tokens are all a prefix of the new prompt (the same conversation, one turn
 *   later) is handed over as it is: no copy.
 * - Otherwise the entry is forked (its KV copied) and the copy cut to the common prefix, so the
 *   entry stays for other requests; copying is far cheaper per token than evaluating, but a
 *   prefix shorter than `minReuse` tokens is evaluated again rather than copy a long entry for it.
 * - Entries are evicted least recently used first to stay within `maxBytes` of KV cache and
 *   `maxEntries` sequences; a
 *   stored entry drops those it extends (whatever they would reuse, it reuses as well).
 *
 * Backends are batch- and sequence-invariant (the contract suite), so a generation that starts
 * from a cached prefix gives the same tokens as one that evaluates the whole prompt.
 */
import type { CompiledModel } from "@bitnet-ts/engine-core";
import { GenerationError, GenerationErrorCode } from "./errors";

export interface PromptCacheOptions {
  /** KV-cache bytes the cached sequences may hold in all; 0 keeps nothing. */
  readonly maxBytes: number;
  /** Most sequences kept (default 64): every lookup compares the prompt with each of them. */
  readonly maxEntries?: number;
  /** Shortest common prefix worth reusing from an entry it does not cover whole (default 16). */
  readonly minReuse?: number;
}

/** What a generation starts from. */
export interface PromptCacheLookup {
  /** A sequence of the model, owned by the caller from now on. */
  readonly sequence: number;
  /** Leading prompt tokens already in its KV cache (0: a fresh sequence). */
  readonly reuse: number;
}

export interface PromptCacheStats {
  readonly entries: number;
  /** KV bytes the cached sequences hold. */
  readonly bytes: number;
  readonly maxBytes: number;
  /** Lookups that reused a prefix, and those that did not. */
  readonly hits: number;
  readonly misses: number;
  /** Prompt tokens not evaluated thanks to the cache, in all. */
  readonly reusedTokens: number;
  readonly evictions: number;
}

interface Entry {
  readonly sequence: number;
  readonly tokens: readonly number[];
  readonly bytes: number;
  used: number;
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) {
    i++;
  }
  return i;
}

export class PromptCache {
  readonly #model: CompiledModel;
  readonly maxBytes: number;
  readonly minReuse: number;
  readonly maxEntries: number;
  readonly #kvBytesPerToken: number;
  readonly #entries: Entry[] = [];
  #bytes = 0;
  #clock = 0;
  #hits = 0;
  #misses = 0;
  #reused = 0;
  #evictions = 0;

  constructor(model: CompiledModel, options: PromptCacheOptions) {
    if (!Number.isFinite(options.maxBytes) || options.maxBytes < 0) {
      throw new GenerationError(
        GenerationErrorCode.BAD_OPTION,
        `could not create the prompt cache - maxBytes = ${options.maxBytes}; expected a non-negative number of bytes.`,
      );
    }
    const minReuse = options.minReuse ?? 16;
    if (!Number.isInteger(minReuse) || minReuse < 1) {
      throw new GenerationError(
        GenerationErrorCode.BAD_OPTION,
        `could not create the prompt cache - minReuse = ${minReuse}; expected a positive integer.`,
      );
    }
    const maxEntries = options.maxEntries ?? 64;
    if (!Number.isInteger(maxEntries) || maxEntries < 0) {
      throw new GenerationError(
        GenerationErrorCode.BAD_OPTION,
        `could not create the prompt cache - maxEntries = ${maxEntries}; expected a non-negative integer.`,
      );
    }
    this.#model = model;
    this.#kvBytesPerToken = model.capacity().kvBytesPerToken;
    this.maxBytes = options.maxBytes;
    this.maxEntries = maxEntries;
    this.minReuse = minReuse;
  }

  stats(): PromptCacheStats {
    return {
      entries: this.#entries.length,
      bytes: this.#bytes,
      maxBytes: this.maxBytes,
      hits: this.#hits,
      misses: this.#misses,
      reusedTokens: this.#reused,
      evictions: this.#evictions,
    };
  }

  /**
   * A sequence to generate `prompt` on: cached when an entry shares enough of its prefix, fresh
   * otherwise. At least the last prompt token is always left to evaluate (its logits are needed).
   */
  take(prompt: readonly number[]): PromptCacheLookup {
    let best: Entry | undefined;
    let bestPrefix = 0;
    for (const entry of this.#entries) {
      const n = commonPrefix(entry.tokens, prompt);
      if (n > bestPrefix) {
        best = entry;
        bestPrefix = n;
      }
    }
    const reuse = Math.min(bestPrefix, prompt.length - 1);
    if (best === undefined || reuse <= 0) {
      this.#misses++;
      return { sequence: this.#model.createSequence(), reuse: 0 };
    }
    const whole = bestPrefix === best.tokens.length;
    if (!whole && reuse < this.minReuse) {
      this.#misses++;
      return { sequence: this.#model.createSequence(), reuse: 0 };
    }
    this.#hits++;
    this.#reused += reuse;
    let sequence: number;
    if (whole) {
      this.#remove(best);
      sequence = best.sequence;
    } else {
      best.used = ++this.#clock;
      sequence = this.#model.forkSequence(best.sequence);
    }
    if (this.#model.sequenceLength(sequence) > reuse) {
      this.#model.truncateSequence(sequence, reuse);
    }
    return { sequence, reuse };
  }

  /**
   * Keeps `sequence`, whose KV cache holds exactly `tokens`, for later requests; the cache owns
   * it from now on (it frees it when evicted, or at once when it does not fit or adds nothing).
   */
  store(sequence: number, tokens: readonly number[]): void {
    const length = this.#model.sequenceLength(sequence);
    if (length !== tokens.length) {
      this.#model.freeSequence(sequence);
      throw new GenerationError(
        GenerationErrorCode.BAD_OPTION,
        `could not cache sequence ${sequence} - it holds ${length} tokens, not the ${tokens.length} given.`,
      );
    }
    const bytes = length * this.#kvBytesPerToken;
    const covering = this.#entries.find(
      (e) => e.tokens.length >= length && commonPrefix(e.tokens, tokens) === length,
    );
    if (covering !== undefined) {
      covering.used = ++this.#clock;
    }
    if (length === 0 || bytes > this.maxBytes || this.maxEntries === 0 || covering !== undefined) {
      this.#model.freeSequence(sequence);
      return;
    }
    for (const e of [...this.#entries]) {
      if (commonPrefix(e.tokens, tokens) === e.tokens.length) {
        this.#drop(e);
      }
    }
    while (this.#bytes + bytes > this.maxBytes || this.#entries.length >= this.maxEntries) {
      const oldest = this.#entries.reduce((a, b) => (b.used < a.used ? b : a));
      this.#drop(oldest);
      this.#evictions++;
    }
    this.#entries.push({ sequence, tokens: [...tokens], bytes, used: ++this.#clock });
    this.#bytes += bytes;
  }

  /** Frees every cached sequence. */
  clear(): void {
    for (const e of [...this.#entries]) {
      this.#drop(e);
    }
  }

  #remove(entry: Entry): void {
    this.#entries.splice(this.#entries.indexOf(entry), 1);
    this.#bytes -= entry.bytes;
  }

  #drop(entry: Entry): void {
    this.#remove(entry);
    try {
      this.#model.freeSequence(entry.sequence);
    } catch {
      // the model was disposed: its sequences are gone already
    }
  }
}
