/**
 * Token ids → bytes → text. Pieces follow llama.cpp's token_to_piece; text is assembled from
 * bytes so that multi-token characters (emoji, CJK split by byte-level BPE) come out whole.
 */

// ignoreBOM: a text that starts with U+FEFF must decode with it (round trips).
const decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

/** Length of the trailing bytes that start a UTF-8 sequence not yet complete (0..3). */
export function incompleteTail(bytes: Uint8Array, length: number = bytes.length): number {
  for (let back = 1; back <= Math.min(3, length); back++) {
    const b = bytes[length - back]!;
    if ((b & 0xc0) === 0x80) {
      continue; // continuation byte: keep looking for the lead
    }
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

/** Decodes bytes as UTF-8 (invalid sequences become U+FFFD). */
export function utf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/**
 * Incremental decoding for streaming: feed token pieces, get text that never ends inside a
 * UTF-8 sequence. Bytes of an unfinished character wait for the next piece.
 *
 * @example
 * const stream = tokenizer.createDecoder();
 * for (const id of ids) process.stdout.write(stream.push(id));
 * process.stdout.write(stream.flush());
 */
export class StreamingDecoder {
  #pending = new Uint8Array(0);
  readonly #piece: (id: number) => Uint8Array;

  constructor(piece: (id: number) => Uint8Array) {
    this.#piece = piece;
  }

  /** Adds one token; returns the text that is now complete (possibly ""). */
  push(id: number): string {
    return this.pushBytes(this.#piece(id));
  }

  pushBytes(bytes: Uint8Array): string {
    const all = new Uint8Array(this.#pending.length + bytes.length);
    all.set(this.#pending, 0);
    all.set(bytes, this.#pending.length);
    const keep = incompleteTail(all);
    this.#pending = all.slice(all.length - keep);
    return keep === all.length ? "" : decoder.decode(all.subarray(0, all.length - keep));
  }

  /** Ends the stream: returns what is left (an unfinished character becomes U+FFFD). */
  flush(): string {
    const rest = this.#pending;
    this.#pending = new Uint8Array(0);
    return rest.length === 0 ? "" : decoder.decode(rest);
  }

  /** True when bytes of an unfinished character are waiting. */
  get hasPending(): boolean {
    return this.#pending.length > 0;
  }
}
