/**
 * SentencePiece BPE as llama.cpp runs it (llm_tokenizer_spm_session): the text, spaces escaped
 * to "▁", is split into characters; the adjacent pair whose concatenation is a vocabulary piece
 * with the highest score (leftmost on ties) is merged until none is left; symbols that are not
 * pieces are re-split along their merge history or emitted as byte tokens `<0xNN>`.
 */
import type { GgufStringList } from "@bitnet-ts/gguf";
import { PairHeap } from "./heap";

export class SpmModel {
  readonly vocabSize: number;
  readonly #ids = new Map<string, number>();
  readonly #scores: Float32Array;
  readonly #byteIds = new Int32Array(256).fill(-1);
  readonly #unk: number | undefined;

  constructor(tokens: GgufStringList, scores: Float32Array, unk: number | undefined) {
    this.vocabSize = tokens.length;
    // Strings are compared by UTF-16 ranges of the input while merging, so a Map of strings
    // fits here (SentencePiece vocabularies are ~32k pieces).
    for (let id = tokens.length - 1; id >= 0; id--) {
      this.#ids.set(tokens.get(id), id);
    }
    this.#scores = scores;
    this.#unk = unk;
    for (let b = 0; b < 256; b++) {
      const id = this.#ids.get(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
      if (id !== undefined) {
        this.#byteIds[b] = id;
      }
    }
  }

  tokenId(text: string): number | undefined {
    return this.#ids.get(text);
  }

  /** Encodes escaped text (spaces already "▁"), appending ids to `out`. */
  encode(text: string, out: number[]): void {
    // Symbols are code points: [start, end) in UTF-16 units.
    const starts: number[] = [];
    for (let i = 0; i < text.length; ) {
      starts.push(i);
      const c = text.charCodeAt(i);
      i += c >= 0xd800 && c < 0xdc00 && i + 1 < text.length ? 2 : 1;
    }
    const n = starts.length;
    if (n === 0) {
      return;
    }
    const start = Int32Array.from(starts);
    const end = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      end[i] = i + 1 < n ? start[i + 1]! : text.length;
    }
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    // Queue entries: (left index, text length when queued); the piece text → its two halves.
    const entryLeft: number[] = [];
    const entryLength: number[] = [];
    const revMerge = new Map<string, [number, number, number, number]>();
    const heap = new PairHeap();
    const tryAdd = (left: number, right: number): void => {
      if (left < 0 || right < 0) {
        return;
      }
      const piece = text.slice(start[left]!, end[right]!);
      const id = this.#ids.get(piece);
      if (id === undefined) {
        return;
      }
      // Highest score first, then leftmost: negate the score for the min-heap.
      heap.push(-this.#scores[id]!, left, entryLeft.length);
      entryLeft.push(left);
      entryLength.push(piece.length);
      revMerge.set(piece, [start[left]!, end[left]!, start[right]!, end[right]!]);
    };
    for (let i = 1; i < n; i++) {
      tryAdd(i - 1, i);
    }
    while (heap.size > 0) {
      const e = heap.pop();
      const left = entryLeft[e]!;
      const right = next[left]!;
      if (right < 0 || end[left] === start[left] || end[right]! - start[left]! !== entryLength[e]) {
        continue; // stale
      }
      end[left] = end[right]!;
      start[right] = end[right]!; // mark as merged away (empty)
      next[left] = next[right]!;
      if (next[right]! >= 0) {
        prev[next[right]!] = left;
      }
      tryAdd(prev[left]!, left);
      tryAdd(left, next[left]!);
    }
    for (let i = 0; i >= 0; i = next[i]!) {
      this.#resegment(text, start[i]!, end[i]!, revMerge, out);
    }
  }

  #resegment(
    text: string,
    from: number,
    to: number,
    revMerge: Map<string, [number, number, number, number]>,
    out: number[],
  ): void {
    const piece = text.slice(from, to);
    const id = this.#ids.get(piece);
    if (id !== undefined) {
      out.push(id);
      return;
    }
    const halves = revMerge.get(piece);
    if (halves === undefined) {
      for (const b of new TextEncoder().encode(piece)) {
        const byteId = this.#byteIds[b]!;
        if (byteId >= 0) {
          out.push(byteId);
        } else if (this.#unk !== undefined) {
          out.push(this.#unk);
        }
      }
      return;
    }
    this.#resegment(text, halves[0], halves[1], revMerge, out);
    this.#resegment(text, halves[2], halves[3], revMerge, out);
  }
}
