/**
 * Byte-level BPE (GPT-2 / LLaMA-3 style), llama.cpp's llm_tokenizer_bpe_session: each
 * pre-token is mapped to the byte-level alphabet, split into characters, and the adjacent pair
 * with the lowest merge rank (leftmost on ties) is merged until no pair has a rank.
 *
 * Symbols are integer ids. Strings that occur in merges but not in the vocabulary get ids past
 * the end of the vocabulary, so merge behaviour matches llama.cpp even for odd vocabularies;
 * such symbols are emitted as their bytes' tokens at the end, as llama.cpp does.
 */
import { BYTE_TO_CHAR } from "./byte-level";
import { TokenizerError, TokenizerErrorCode } from "./errors";
import { PairHeap } from "./heap";

/** Pair keys are left · 2^21 + right: symbol ids must stay below 2^21 (2M). */
const ID_BITS = 2 ** 21;
/** Words up to this many characters merge by rescanning; longer ones use a heap. */
const SHORT_WORD = 24;

export class BpeModel {
  readonly vocabSize: number;
  /** Symbol string → id (vocabulary tokens first, extra merge-only strings after). */
  readonly #ids = new Map<string, number>();
  readonly #strings: string[];
  /** Pair key → merge index; rank = index. */
  readonly #pairs = new Map<number, number>();
  readonly #merged: Int32Array;
  /** Byte → id of the byte's one-character token (for fallback), -1 if absent. */
  readonly #byteIds = new Int32Array(256).fill(-1);
  /** Code unit (< 324) → id of that byte-level character, -1 if absent. */
  readonly #charIds = new Int32Array(324).fill(-1);

  constructor(tokens: readonly string[], merges: readonly string[]) {
    this.vocabSize = tokens.length;
    this.#strings = [...tokens];
    for (let id = tokens.length - 1; id >= 0; id--) {
      this.#ids.set(tokens[id]!, id); // lowest id wins for duplicate strings
    }
    const symbol = (s: string): number => {
      let id = this.#ids.get(s);
      if (id === undefined) {
        id = this.#strings.length;
        this.#strings.push(s);
        this.#ids.set(s, id);
      }
      return id;
    };
    const merged: number[] = [];
    for (let rank = 0; rank < merges.length; rank++) {
      const merge = merges[rank]!;
      // Split at the first space at index ≥ 1 (llama.cpp), so a left part may start with a space char.
      const space = merge.indexOf(" ", 1);
      if (space < 0) {
        continue; // unsplittable merges are skipped, as llama.cpp does
      }
      const left = symbol(merge.slice(0, space));
      const right = symbol(merge.slice(space + 1));
      const key = left * ID_BITS + right;
      if (!this.#pairs.has(key)) {
        this.#pairs.set(key, merged.length);
        merged.push(symbol(merge.slice(0, space) + merge.slice(space + 1)));
      }
    }
    if (this.#strings.length >= ID_BITS) {
      throw new TokenizerError(
        TokenizerErrorCode.INVALID_VOCAB,
        `could not build a BPE tokenizer - ${this.#strings.length} symbols exceed the supported 2^21.`,
      );
    }
    this.#merged = Int32Array.from(merged);
    for (let b = 0; b < 256; b++) {
      const id = this.#ids.get(BYTE_TO_CHAR[b]!);
      if (id !== undefined && id < this.vocabSize) {
        this.#byteIds[b] = id;
        this.#charIds[BYTE_TO_CHAR[b]!.charCodeAt(0)] = id;
      }
    }
  }

  /** The id of a vocabulary string, or undefined. */
  tokenId(text: string): number | undefined {
    const id = this.#ids.get(text);
    return id !== undefined && id < this.vocabSize ? id : undefined;
  }

  /**
   * Encodes one pre-token already mapped to the byte-level alphabet, appending ids to `out`.
   * With `ignoreMerges`, a pre-token that is itself in the vocabulary is emitted whole.
   */
  encodeWord(word: string, ignoreMerges: boolean, out: number[]): void {
    if (ignoreMerges) {
      const whole = this.tokenId(word);
      if (whole !== undefined) {
        out.push(whole);
        return;
      }
    }
    const n = word.length;
    const syms = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const c = word.charCodeAt(i);
      const id = c < 324 ? this.#charIds[c]! : -1;
      syms[i] = id >= 0 ? id : this.#symbolFor(word[i]!);
    }
    const final = n <= SHORT_WORD ? this.#mergeShort(syms) : this.#mergeLong(syms);
    for (const id of final) {
      this.#emit(id, out);
    }
  }

  #symbolFor(ch: string): number {
    return this.#ids.get(ch) ?? -1 - ch.charCodeAt(0); // negative: a character no merge involves
  }

  #rank(left: number, right: number): number {
    if (left < 0 || right < 0) {
      return -1;
    }
    return this.#pairs.get(left * ID_BITS + right) ?? -1;
  }

  /** Rescans all adjacent pairs for the lowest rank after each merge: fastest for short words. */
  #mergeShort(syms: Int32Array): number[] {
    const s = Array.from(syms);
    for (;;) {
      let best = -1;
      let bestRank = Number.POSITIVE_INFINITY;
      for (let i = 0; i + 1 < s.length; i++) {
        const r = this.#rank(s[i]!, s[i + 1]!);
        if (r >= 0 && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) {
        return s;
      }
      s.splice(best, 2, this.#merged[bestRank]!);
    }
  }

  /** Linked symbols + a heap of candidate pairs (stale entries skipped): O(n log n). */
  #mergeLong(syms: Int32Array): number[] {
    const n = syms.length;
    const id = Int32Array.from(syms);
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    // Each heap entry remembers the two ids it was made for, to detect staleness.
    const entryLeft: number[] = [];
    const entryLeftId: number[] = [];
    const entryRightId: number[] = [];
    const heap = new PairHeap();
    const push = (left: number): void => {
      const right = next[left]!;
      if (left < 0 || right < 0) {
        return;
      }
      const r = this.#rank(id[left]!, id[right]!);
      if (r >= 0) {
        heap.push(r, left, entryLeft.length);
        entryLeft.push(left);
        entryLeftId.push(id[left]!);
        entryRightId.push(id[right]!);
      }
    };
    for (let i = 0; i + 1 < n; i++) {
      push(i);
    }
    while (heap.size > 0) {
      const e = heap.pop();
      const left = entryLeft[e]!;
      const right = next[left]!;
      if (
        !alive[left] ||
        right < 0 ||
        id[left] !== entryLeftId[e] ||
        id[right] !== entryRightId[e]
      ) {
        continue; // stale: one side has merged since this pair was queued
      }
      id[left] = this.#merged[this.#rank(id[left]!, id[right]!)]!;
      alive[right] = 0;
      next[left] = next[right]!;
      if (next[right]! >= 0) {
        prev[next[right]!] = left;
      }
      if (prev[left]! >= 0) {
        push(prev[left]!);
      }
      push(left);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]!) {
      out.push(id[i]!);
    }
    return out;
  }

  /** Appends a final symbol's token, or its bytes' tokens when it is not in the vocabulary. */
  #emit(symbol: number, out: number[]): void {
    if (symbol >= 0 && symbol < this.vocabSize) {
      out.push(symbol);
      return;
    }
    const text = symbol >= 0 ? this.#strings[symbol]! : String.fromCharCode(-1 - symbol);
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      // Byte-level characters stand for single bytes; anything else is encoded as UTF-8.
      const viaChar = c < 324 ? this.#charIds[c]! : -1;
      if (viaChar >= 0) {
        out.push(viaChar);
        continue;
      }
      for (const b of new TextEncoder().encode(text[i]!)) {
        const id = this.#byteIds[b]!;
        if (id >= 0) {
          out.push(id);
        }
      }
    }
  }
}
