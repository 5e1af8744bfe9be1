/**
 * GPT-2's byte ↔ unicode map: printable Latin-1 bytes map to themselves, the other 68 bytes
 * (0-32, 127-160, 173), in increasing order, to U+0100… U+0143. Byte-level BPE vocabularies
 * store tokens in this alphabet (a space is "Ġ", a newline "Ċ").
 */

/** BYTE_TO_CHAR[b] is the one-character string byte b maps to. */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const out: string[] = new Array(256);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    out[b] = String.fromCharCode(printable ? b : next++);
  }
  return out;
})();

/** CHAR_TO_BYTE[codeUnit] is the byte a mapped character stands for, or -1 (code units < 324). */
export const CHAR_TO_BYTE: Int16Array = (() => {
  const out = new Int16Array(324).fill(-1);
  BYTE_TO_CHAR.forEach((c, b) => {
    out[c.charCodeAt(0)] = b;
  });
  return out;
})();

const encoder = new TextEncoder();

/** Maps a string's UTF-8 bytes to the byte-level alphabet. */
export function toByteLevel(text: string): string {
  const bytes = encoder.encode(text);
  let out = "";
  for (let i = 0; i < bytes.length; i++) {
    out += BYTE_TO_CHAR[bytes[i]!];
  }
  return out;
}

/** The raw bytes a byte-level token string stands for, or undefined if it has foreign characters. */
export function fromByteLevel(token: string): Uint8Array | undefined {
  const out = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const c = token.charCodeAt(i);
    const b = c < 324 ? CHAR_TO_BYTE[c]! : -1;
    if (b < 0) {
      return undefined;
    }
    out[i] = b;
  }
  return out;
}
