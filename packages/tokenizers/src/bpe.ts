/**
 * Byte-level BPE (GPT-2 / LLaMA-3 style), llama.cpp's llm_tokenizer_bpe_session: each
 * pre-token is mapped to the byte-level alphabet, split into characters, and the adjacent pair
 * with the lowest merge rank (leftmost on ties) is merged until no pair has a rank.
 *
 * Symbols are integer ids. Strings that occur in merges but not in the vocabulary get ids past
 * the end of the vocabulary, so merge behaviour matches llama.cpp even for odd vocabularies;
 * such symbols are emitted as their bytes' tokens at the end, as llama.cpp does.
 */
import type { GgufStringList } from "@bitnet-ts/gguf";
import { BYTE_TO_CHAR } from "./byte-level";
import { PairHeap } from "./heap";
import { PairIndex, StringIndex } from "./tables";

/** Words up to this many characters merge by rescanning; longer ones use a heap. */
const SHORT_WORD = 24;

const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/** Bytes in the UTF-8 sequence a lead byte starts. */
function sequenceLength(lead: number): number {
  return lead < 0xc0 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
}

export class BpeModel {
  readonly vocabSize: number;
  /** Vocabulary string → id, by bytes. */
  readonly #ids: StringIndex;
  /** Strings that occur in merges but not in the vocabulary: id vocabSize + i. */
  readonly #extras: string[] = [];
  readonly #extraIds = new Map<string, number>();
  /** (left, right) → merge rank. */
  readonly #pairs: PairIndex;
  /** Rank → the merged symbol. */
  readonly #merged: Int32Array;
  /** Byte → id of the byte's one-character token (for fallback), -1 if absent. */
  readonly #byteIds = new Int32Array(256).fill(-1);
  /** Code unit (< 324) → id of that byte-level character, -1 if absent. */
  readonly #charIds = new Int32Array(324).fill(-1);

  constructor(tokens: GgufStringList, merges: GgufStringList) {
    this.vocabSize = tokens.length;
    this.#ids = new StringIndex(tokens);
    this.#pairs = new PairIndex(merges.length);
    const merged = new Int32Array(merges.length);
    const bytes = merges.buffer;
    // Works on the merge list's bytes: no string is decoded unless it is missing from the vocabulary.
    const symbol = (a0: number, a1: number, b0: number, b1: number): number => {
      const id = this.#ids.findJoined(bytes, a0, a1, b0, b1);
      if (id >= 0) {
        return id;
      }
      const text = decoder.decode(bytes.subarray(a0, a1)) + decoder.decode(bytes.subarray(b0, b1));
      return this.#extra(text);
    };
    for (let rank = 0; rank < merges.length; rank++) {
      const start = merges.start(rank);
      const end = merges.end(rank);
      // Split at the first space after the first character (llama.cpp: index ≥ 1), so a left
      // part may start with a space character.
      let space = -1;
      for (let i = start + (start < end ? sequenceLength(bytes[start]!) : 0); i < end; i++) {
        if (bytes[i] === 0x20) {
          space = i;
          break;
        }
      }
      if (space < 0) {
        continue; // unsplittable merges are skipped, as llama.cpp does
      }
      const left = symbol(start, space, space, space);
      const right = symbol(space + 1, end, end, end);
      if (this.#pairs.add(left, right)) {
        merged[this.#pairs.size - 1] = symbol(start, space, space + 1, end);
      }
    }
    this.#merged = merged.slice(0, this.#pairs.size);
    for (let b = 0; b < 256; b++) {
      const id = this.#ids.find(BYTE_TO_CHAR[b]!);
      if (id >= 0) {
        this.#byteIds[b] = id;
        this.#charIds[BYTE_TO_CHAR[b]!.charCodeAt(0)] = id;
      }
    }
  }

  #extra(text: string): number {
    let id = this.#extraIds.get(text);
    if (id === undefined) {
      id = this.vocabSize + this.#extras.length;
      this.#extras.push(text);
      this.#extraIds.set(text, id);
    }
    return id;
  }

  /** The id of a vocabulary string, or undefined. */
  tokenId(text: string): number | undefined {
    const id = this.#ids.find(text);
    return id >= 0 ? id : undefined;
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
    const id = this.#ids.find(ch);
    // Negative: a character no merge involves.
    return id >= 0 ? id : (this.#extraIds.get(ch) ?? -1 - ch.charCodeAt(0));
  }

  #rank(left: number, right: number): number {
    if (left < 0 || right < 0) {
      return -1;
    }
    return this.#pairs.rank(left, right);
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
    const text =
      symbol >= 0 ? this.#extras[symbol - this.vocabSize]! : String.fromCharCode(-1 - symbol);
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
