import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { GgufValueType, gguf } from "./metadata";
import { HeaderBuffer } from "./read";
import { parseGguf } from "./reader";
import { GgufStringList, isWellFormedUtf8 } from "./string-list";
import { GgufWriter } from "./writer";

const fatal = new TextDecoder("utf-8", { fatal: true });

describe("GgufStringList", () => {
  const strings = ["", "a", "Ġthe", "日本語", "\ufeff", "🌍x", "a".repeat(40), "é".repeat(40)];
  const list = GgufStringList.from(strings);

  it("gives back each string, its bytes and its offsets", () => {
    expect(list.length).toBe(strings.length);
    expect(list.toArray()).toEqual(strings);
    expect([...list]).toEqual(strings);
    for (const [i, s] of strings.entries()) {
      expect(list.get(i)).toBe(s);
      expect(list.bytes(i)).toEqual(new TextEncoder().encode(s));
      expect(list.end(i) - list.start(i)).toBe(new TextEncoder().encode(s).length);
    }
    expect(list.byteLength).toBe(list.buffer.length);
  });

  it("finds strings by their bytes", () => {
    expect(list.indexOf("日本語")).toBe(3);
    expect(list.indexOf("")).toBe(0);
    expect(list.indexOf("missing")).toBe(-1);
  });

  it("compares lists", () => {
    expect(list.equals(GgufStringList.from(strings))).toBe(true);
    expect(list.firstDifference(GgufStringList.from(strings))).toBe(-1);
    const changed = [...strings];
    changed[4] = "x";
    expect(list.equals(GgufStringList.from(changed))).toBe(false);
    expect(list.firstDifference(GgufStringList.from(changed))).toBe(4);
    expect(list.firstDifference(GgufStringList.from(strings.slice(0, 3)))).toBe(3);
  });

  it("rejects indexes outside the list and inconsistent offsets", () => {
    expect(() => list.get(strings.length)).toThrow(RangeError);
    expect(() => list.bytes(-1)).toThrow(RangeError);
    expect(() => new GgufStringList(new Uint8Array(3), Uint32Array.of(1, 2))).toThrow(RangeError);
  });

  it("is what the reader returns for string arrays, and the writer copies it back byte for byte", async () => {
    const w = new GgufWriter();
    w.set("tokens", gguf.stringArray(strings));
    const first = parseGguf(await w.toBytes());
    const read = first.metadata.requireStringList("tokens");
    expect(read).toBeInstanceOf(GgufStringList);
    expect(read.equals(list)).toBe(true);
    expect(first.metadata.getArrayLength("tokens")).toBe(strings.length);
    expect(first.metadata.requireStringArray("tokens")).toEqual(strings);
    const copy = new GgufWriter();
    copy.setAll(first.metadata);
    const second = parseGguf(await copy.toBytes());
    expect(second.metadata.requireStringList("tokens").equals(list)).toBe(true);
    expect(second.metadata.getArray("tokens")?.elementType).toBe(GgufValueType.STRING);
  });
});

describe("isWellFormedUtf8", () => {
  it("agrees with a fatal TextDecoder on random bytes", () => {
    const bytes = fc.uint8Array({ maxLength: 12 });
    const likelyUtf8 = fc
      .array(
        fc.oneof(
          fc.integer({ min: 0x80, max: 0xbf }),
          fc.integer({ min: 0xc0, max: 0xff }),
          fc.integer({ min: 0, max: 0x7f }),
        ),
        { maxLength: 8 },
      )
      .map((a) => Uint8Array.from(a));
    fc.assert(
      fc.property(fc.oneof(bytes, likelyUtf8), (b) => {
        let valid = true;
        try {
          fatal.decode(b);
        } catch {
          valid = false;
        }
        expect(isWellFormedUtf8(b, 0, b.length)).toBe(valid);
      }),
      { numRuns: 20_000 },
    );
  });

  it("accepts every encoded string and checks only the given range", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), (s) => {
        const b = new TextEncoder().encode(s);
        expect(isWellFormedUtf8(b, 0, b.length)).toBe(true);
      }),
    );
    const euro = new TextEncoder().encode("€"); // e2 82 ac
    expect(isWellFormedUtf8(euro, 0, 2)).toBe(false);
    expect(isWellFormedUtf8(euro, 0, 3)).toBe(true);
    // Overlong, surrogate and beyond-U+10FFFF forms.
    for (const bad of [
      [0xc0, 0x80],
      [0xe0, 0x80, 0x80],
      [0xed, 0xa0, 0x80],
      [0xf4, 0x90, 0x80, 0x80],
      [0xf8],
    ]) {
      expect(isWellFormedUtf8(Uint8Array.from(bad), 0, bad.length)).toBe(false);
    }
  });
});

describe("HeaderBuffer", () => {
  it("grows in place keeping its bytes, and gives its memory back", () => {
    const header = new HeaderBuffer(1 << 20);
    header.grow(4).set([1, 2, 3, 4]);
    expect(Array.from(header.grow(8))).toEqual([1, 2, 3, 4, 0, 0, 0, 0]);
    expect((header.bytes.buffer as ArrayBuffer).resizable).toBe(true); // Node 20 has resizable ArrayBuffers
    // Past the reserved size it falls back to a plain copy.
    const big = header.grow((1 << 20) + 1);
    expect((big.buffer as ArrayBuffer).resizable).toBe(false);
    expect(Array.from(big.subarray(0, 5))).toEqual([1, 2, 3, 4, 0]);
    header.release();
    expect(header.bytes.length).toBe(0);
  });
});
