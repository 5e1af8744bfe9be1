/**
 * Hash tables in typed arrays for the BPE model. A LLaMA-3 vocabulary has 128k tokens and 280k
 * merges: as a Map of strings and a Map of pair keys they took ~20 MB of JS heap (plus garbage
 * while building); here they take ~6 MB and are built from the file's bytes without decoding
 * a string. Open addressing with linear probing, load factor ≤ 0.75.
 */
import type { GgufStringList } from "@bitnet-ts/gguf";

const encoder = new TextEncoder();

function capacityFor(n: number): number {
  let size = 16;
  while (size * 3 < n * 4) {
    size *= 2;
  }
  return size;
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

function fnv(h: number, bytes: Uint8Array, start: number, end: number): number {
  for (let i = start; i < end; i++) {
    h = Math.imul(h ^ bytes[i]!, FNV_PRIME);
  }
  return h;
}

/**
 * String → index of a {@link GgufStringList}, looked up by UTF-8 bytes; for duplicate strings
 * the lowest index wins.
 */
export class StringIndex {
  readonly #list: GgufStringList;
  /** index + 1, or 0 for an empty slot. */
  readonly #slots: Int32Array;
  readonly #mask: number;
  #scratch = new Uint8Array(256);

  constructor(list: GgufStringList) {
    this.#list = list;
    const size = capacityFor(list.length);
    this.#slots = new Int32Array(size);
    this.#mask = size - 1;
    const bytes = list.buffer;
    for (let id = 0; id < list.length; id++) {
      const start = list.start(id);
      const end = list.end(id);
      let slot = fnv(FNV_OFFSET, bytes, start, end) & this.#mask;
      for (;;) {
        const held = this.#slots[slot]!;
        if (held === 0) {
          this.#slots[slot] = id + 1;
          break;
        }
        if (this.#equals(held - 1, bytes, start, end, end, end)) {
          break; // a duplicate: the lower id keeps the slot
        }
        slot = (slot + 1) & this.#mask;
      }
    }
  }

  /**
   * The index of the string whose bytes are `bytes[a0, a1)` followed by `bytes[b0, b1)`, or -1
   * (two ranges, so a merge's halves are looked up joined without building the joined string).
   */
  findJoined(bytes: Uint8Array, a0: number, a1: number, b0: number, b1: number): number {
    let slot = fnv(fnv(FNV_OFFSET, bytes, a0, a1), bytes, b0, b1) & this.#mask;
    for (;;) {
      const held = this.#slots[slot]!;
      if (held === 0) {
        return -1;
      }
      if (this.#equals(held - 1, bytes, a0, a1, b0, b1)) {
        return held - 1;
      }
      slot = (slot + 1) & this.#mask;
    }
  }

  /** The index of the string with bytes `bytes[start, end)`, or -1. */
  findBytes(bytes: Uint8Array, start: number, end: number): number {
    return this.findJoined(bytes, start, end, end, end);
  }

  /** The index of `text`, or -1. */
  find(text: string): number {
    // UTF-8 takes at most 3 bytes per UTF-16 unit.
    if (this.#scratch.length < text.length * 3) {
      this.#scratch = new Uint8Array(text.length * 3);
    }
    const { written } = encoder.encodeInto(text, this.#scratch);
    return this.findBytes(this.#scratch, 0, written);
  }

  #equals(id: number, bytes: Uint8Array, a0: number, a1: number, b0: number, b1: number): boolean {
    const list = this.#list;
    const start = list.start(id);
    if (list.end(id) - start !== a1 - a0 + (b1 - b0)) {
      return false;
    }
    const own = list.buffer;
    let at = start;
    for (let i = a0; i < a1; i++, at++) {
      if (own[at] !== bytes[i]) {
        return false;
      }
    }
    for (let i = b0; i < b1; i++, at++) {
      if (own[at] !== bytes[i]) {
        return false;
      }
    }
    return true;
  }
}

/** (left id, right id) → the merge's rank, the first merge listed for a pair winning. */
export class PairIndex {
  readonly #slots: Int32Array;
  readonly #mask: number;
  readonly #left: Int32Array;
  readonly #right: Int32Array;
  #count = 0;

  constructor(capacity: number) {
    const size = capacityFor(capacity);
    this.#slots = new Int32Array(size);
    this.#mask = size - 1;
    this.#left = new Int32Array(capacity);
    this.#right = new Int32Array(capacity);
  }

  get size(): number {
    return this.#count;
  }

  static #hash(left: number, right: number): number {
    let h = Math.imul(left, 0x9e3779b1) ^ Math.imul(right ^ 0x7f4a7c15, 0x85ebca77);
    h ^= h >>> 15;
    return Math.imul(h, 0x2c1b3c6d) ^ (h >>> 13);
  }

  /** Adds the pair with the next rank; returns false (and adds nothing) when it is already in. */
  add(left: number, right: number): boolean {
    let slot = PairIndex.#hash(left, right) & this.#mask;
    for (;;) {
      const held = this.#slots[slot]!;
      if (held === 0) {
        const rank = this.#count++;
        this.#left[rank] = left;
        this.#right[rank] = right;
        this.#slots[slot] = rank + 1;
        return true;
      }
      if (this.#left[held - 1] === left && this.#right[held - 1] === right) {
        return false;
      }
      slot = (slot + 1) & this.#mask;
    }
  }

  /** The rank of the pair, or -1. */
  rank(left: number, right: number): number {
    let slot = PairIndex.#hash(left, right) & this.#mask;
    for (;;) {
      const held = this.#slots[slot]!;
      if (held === 0) {
        return -1;
      }
      if (this.#left[held - 1] === left && this.#right[held - 1] === right) {
        return held - 1;
      }
      slot = (slot + 1) & this.#mask;
    }
  }
}
