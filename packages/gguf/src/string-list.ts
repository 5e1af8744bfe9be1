/**
 * A read-only list of strings kept as their UTF-8 bytes back to back, which is how a GGUF file
 * stores string arrays. A LLaMA-3 vocabulary plus its merges is ~410k strings: as JS strings in
 * arrays they take ~35 MB of heap, as one byte buffer and an offset table ~5 MB. Strings are
 * decoded only when asked for, and consumers that work on bytes (the tokenizer's hash tables)
 * never decode most of them at all.
 */

// ignoreBOM: keep a leading U+FEFF (a real token text in some vocabularies) instead of stripping it.
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
const encoder = new TextEncoder();

export class GgufStringList implements Iterable<string> {
  /** Every string's UTF-8 bytes, concatenated. */
  readonly #bytes: Uint8Array;
  /** ends[i] is where string i ends in #bytes (ends[-1] = 0), so string i is [ends[i-1], ends[i]). */
  readonly #ends: Uint32Array;

  /**
   * Wraps bytes already laid out as a list (the GGUF reader builds these); the bytes of each
   * string must be valid UTF-8. Use {@link GgufStringList.from} to build one from strings.
   */
  constructor(bytes: Uint8Array, ends: Uint32Array) {
    if (ends.length > 0 && ends[ends.length - 1] !== bytes.length) {
      throw new RangeError(
        `GgufStringList: the last end offset is ${ends[ends.length - 1]} but there are ${bytes.length} bytes.`,
      );
    }
    this.#bytes = bytes;
    this.#ends = ends;
  }

  /** A list of the given strings (lone surrogates are encoded as U+FFFD, as TextEncoder does). */
  static from(strings: Iterable<string>): GgufStringList {
    const encoded = Array.from(strings, (s) => encoder.encode(s));
    const ends = new Uint32Array(encoded.length);
    let total = 0;
    for (let i = 0; i < encoded.length; i++) {
      total += encoded[i]!.length;
      ends[i] = total;
    }
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const e of encoded) {
      bytes.set(e, at);
      at += e.length;
    }
    return new GgufStringList(bytes, ends);
  }

  get length(): number {
    return this.#ends.length;
  }

  /** Total UTF-8 bytes of all strings. */
  get byteLength(): number {
    return this.#bytes.length;
  }

  /** Where string `index` starts in {@link buffer}. */
  start(index: number): number {
    return index === 0 ? 0 : this.#ends[index - 1]!;
  }

  /** Where string `index` ends (exclusive) in {@link buffer}. */
  end(index: number): number {
    return this.#ends[index]!;
  }

  /** The concatenated bytes of all strings (read-only by contract: do not write to it). */
  get buffer(): Uint8Array {
    return this.#bytes;
  }

  /** The UTF-8 bytes of string `index` (a view, not a copy). */
  bytes(index: number): Uint8Array {
    this.#check(index);
    return this.#bytes.subarray(this.start(index), this.#ends[index]!);
  }

  /** String `index`, decoded (a new string each call). */
  get(index: number): string {
    this.#check(index);
    const start = this.start(index);
    const end = this.#ends[index]!;
    if (end - start <= 32) {
      // Short ASCII (most tokens and merges): cheaper than a TextDecoder call.
      let code = "";
      for (let i = start; i < end; i++) {
        const b = this.#bytes[i]!;
        if (b >= 0x80) {
          return decoder.decode(this.#bytes.subarray(start, end));
        }
        code += String.fromCharCode(b);
      }
      return code;
    }
    return decoder.decode(this.#bytes.subarray(start, end));
  }

  /** The first index of `text`, or -1 (compares bytes: nothing is decoded). */
  indexOf(text: string): number {
    const want = encoder.encode(text);
    for (let i = 0; i < this.length; i++) {
      if (this.#equalsAt(i, want)) {
        return i;
      }
    }
    return -1;
  }

  /** True when both lists hold the same strings in the same order. */
  equals(other: GgufStringList): boolean {
    if (other.length !== this.length || other.byteLength !== this.byteLength) {
      return false;
    }
    for (let i = 0; i < this.length; i++) {
      if (this.#ends[i] !== other.#ends[i]) {
        return false;
      }
    }
    const a = this.#bytes;
    const b = other.#bytes;
    for (let i = 0; i < a.length; i++) {
      if (a[i] !== b[i]) {
        return false;
      }
    }
    return true;
  }

  /** The first index at which the lists differ (by string), or -1 when they are equal. */
  firstDifference(other: GgufStringList): number {
    const n = Math.min(this.length, other.length);
    for (let i = 0; i < n; i++) {
      if (!this.#equalsAt(i, other.bytes(i))) {
        return i;
      }
    }
    return this.length === other.length ? -1 : n;
  }

  /** All strings decoded into an array (allocates every string: avoid on large vocabularies). */
  toArray(): string[] {
    return Array.from(this);
  }

  *[Symbol.iterator](): IterableIterator<string> {
    for (let i = 0; i < this.length; i++) {
      yield this.get(i);
    }
  }

  #equalsAt(index: number, want: Uint8Array): boolean {
    const start = this.start(index);
    if (this.#ends[index]! - start !== want.length) {
      return false;
    }
    for (let j = 0; j < want.length; j++) {
      if (this.#bytes[start + j] !== want[j]) {
        return false;
      }
    }
    return true;
  }

  #check(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.#ends.length) {
      throw new RangeError(
        `GgufStringList: index ${index} is outside 0..${this.#ends.length - 1}.`,
      );
    }
  }
}

/**
 * True when bytes [start, end) are well-formed UTF-8 (no overlong forms, no surrogates, nothing
 * above U+10FFFF): exactly what a fatal TextDecoder accepts, without decoding.
 */
export function isWellFormedUtf8(bytes: Uint8Array, start: number, end: number): boolean {
  let i = start;
  while (i < end) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) {
      need = 1;
    } else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b === 0xe0) {
        lo = 0xa0; // no overlong 3-byte forms
      } else if (b === 0xed) {
        hi = 0x9f; // no surrogates
      }
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b === 0xf0) {
        lo = 0x90; // no overlong 4-byte forms
      } else if (b === 0xf4) {
        hi = 0x8f; // nothing above U+10FFFF
      }
    } else {
      return false;
    }
    if (i + need >= end) {
      return false; // the sequence runs past the end
    }
    const second = bytes[i + 1]!;
    if (second < lo || second > hi) {
      return false;
    }
    for (let k = 2; k <= need; k++) {
      const c = bytes[i + k]!;
      if (c < 0x80 || c > 0xbf) {
        return false;
      }
    }
    i += need + 1;
  }
  return true;
}
