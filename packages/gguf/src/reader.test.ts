import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { plain } from "../test/plain";
import { Raw } from "../test/raw";
import { GgufError, type GgufErrorCode } from "./errors";
import { GgufValueType, gguf } from "./metadata";
import { readGgufFile, readGgufFileSync } from "./node/file";
import { GgufWriter } from "./node/writer";
import { parseGguf } from "./reader";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gguf-reader-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function rejects(bytes: Uint8Array, code: GgufErrorCode, offset?: number): GgufError {
  let caught: unknown;
  try {
    parseGguf(bytes);
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(GgufError);
  const error = caught as GgufError;
  expect(error.code).toBe(code);
  if (offset !== undefined) {
    expect(error.offset).toBe(offset);
  }
  expect(error.message).toMatch(/^could not /);
  return error;
}

/** A small valid file: two metadata keys and one F32 tensor of 4 elements. */
function minimal(): Raw {
  return new Raw()
    .header(1, 2)
    .kvString("general.architecture", "test")
    .kvU32("test.block_count", 1)
    .tensorInfo("a", [4], 0, 0)
    .padTo(32)
    .zeros(16);
}

describe("parseGguf on valid files", () => {
  it("reads a minimal hand-built file", () => {
    const file = parseGguf(minimal().build());
    expect(file.version).toBe(3);
    expect(file.metadata.getString("general.architecture")).toBe("test");
    expect(file.metadata.requireCount("test.block_count")).toBe(1);
    expect(file.tensors).toHaveLength(1);
    const t = file.tensor("a");
    expect(t.type.name).toBe("F32");
    expect(t.shape).toEqual([4]);
    expect(t.byteSize).toBe(16);
    expect(t.fileOffset % 32).toBe(0);
    expect(file.tensorData("a")).toHaveLength(16);
  });

  it("accepts version 2", () => {
    const raw = new Raw().header(0, 1, 2).kvU32("k", 7);
    expect(parseGguf(raw.build()).version).toBe(2);
  });

  it("round-trips every metadata value type through the writer", async () => {
    const w = new GgufWriter();
    w.set("u8", gguf.uint8(255))
      .set("i8", gguf.int8(-128))
      .set("u16", gguf.uint16(65535))
      .set("i16", gguf.int16(-32768))
      .set("u32", gguf.uint32(4294967295))
      .set("i32", gguf.int32(-2147483648))
      .set("f32", gguf.float32(1.5))
      .set("f64", gguf.float64(Math.PI))
      .set("u64", gguf.uint64(2n ** 64n - 1n))
      .set("i64", gguf.int64(-(2n ** 63n)))
      .set("bool", gguf.bool(true))
      .set("str", gguf.string("héllo 🌍"))
      .set("arr.u8", gguf.array(GgufValueType.UINT8, Uint8Array.of(1, 2, 3)))
      .set("arr.i16", gguf.array(GgufValueType.INT16, Int16Array.of(-1, 2)))
      .set("arr.f64", gguf.array(GgufValueType.FLOAT64, Float64Array.of(0.25)))
      .set("arr.u64", gguf.array(GgufValueType.UINT64, BigUint64Array.of(1n, 2n ** 63n)))
      .set("arr.bool", gguf.array(GgufValueType.BOOL, [true, false]))
      .set("arr.str", gguf.stringArray(["a", "", "日本"]))
      .set("arr.empty", gguf.stringArray([]))
      .set(
        "arr.nested",
        gguf.array(GgufValueType.ARRAY, [gguf.int32Array([1, 2]), gguf.stringArray(["x"])]),
      );
    const file = parseGguf(await w.toBytes());
    const got = Object.fromEntries(file.metadata);
    expect(got.u8).toEqual(gguf.uint8(255));
    expect(got.i8).toEqual(gguf.int8(-128));
    expect(got.u16).toEqual(gguf.uint16(65535));
    expect(got.i16).toEqual(gguf.int16(-32768));
    expect(got.u32).toEqual(gguf.uint32(4294967295));
    expect(got.i32).toEqual(gguf.int32(-2147483648));
    expect(got.f32).toEqual(gguf.float32(1.5));
    expect(got.f64).toEqual(gguf.float64(Math.PI));
    expect(got.u64).toEqual(gguf.uint64(2n ** 64n - 1n));
    expect(got.i64).toEqual(gguf.int64(-(2n ** 63n)));
    expect(got.bool).toEqual(gguf.bool(true));
    expect(got.str).toEqual(gguf.string("héllo 🌍"));
    expect(got["arr.u8"]).toEqual(gguf.array(GgufValueType.UINT8, Uint8Array.of(1, 2, 3)));
    expect(got["arr.i16"]).toEqual(gguf.array(GgufValueType.INT16, Int16Array.of(-1, 2)));
    expect(got["arr.f64"]).toEqual(gguf.array(GgufValueType.FLOAT64, Float64Array.of(0.25)));
    expect(got["arr.u64"]).toEqual(
      gguf.array(GgufValueType.UINT64, BigUint64Array.of(1n, 2n ** 63n)),
    );
    expect(got["arr.bool"]).toEqual(gguf.array(GgufValueType.BOOL, [true, false]));
    expect(plain(got["arr.str"])).toEqual(gguf.stringArray(["a", "", "日本"]));
    expect(plain(got["arr.empty"])).toEqual(gguf.stringArray([]));
    expect(plain(got["arr.nested"])).toEqual(
      gguf.array(GgufValueType.ARRAY, [gguf.int32Array([1, 2]), gguf.stringArray(["x"])]),
    );
    expect([...file.metadata.keys()]).toEqual(Object.keys(got));
  });

  it("keeps a leading U+FEFF in strings (a real token text in LLaMA vocabularies)", async () => {
    const w = new GgufWriter();
    w.set("bom", gguf.stringArray(["\ufeff", "\ufeffx", "a\ufeff"]));
    const file = parseGguf(await w.toBytes());
    expect(file.metadata.requireStringArray("bom")).toEqual(["\ufeff", "\ufeffx", "a\ufeff"]);
  });

  it("honours a custom alignment", async () => {
    const w = new GgufWriter({ alignment: 64 });
    w.addTensor("x", "F32", [3], new Uint8Array(12)).addTensor(
      "y",
      "F16",
      [5],
      new Uint8Array(10).fill(7),
    );
    const bytes = await w.toBytes();
    const file = parseGguf(bytes);
    expect(file.alignment).toBe(64);
    expect(file.metadata.requireCount("general.alignment")).toBe(64);
    expect(file.dataOffset % 64).toBe(0);
    expect(file.tensor("y").offset).toBe(64);
    expect(Array.from(file.tensorData("y"))).toEqual(new Array(10).fill(7));
    expect(bytes.length).toBe(file.dataOffset + 64 + 64);
  });

  it("reads only the header of a large file unless asked for data, growing its read window", async () => {
    const w = new GgufWriter();
    // ~3 MB of metadata: more than the 1 MB first read.
    w.set(
      "big",
      gguf.stringArray(Array.from({ length: 100_000 }, (_, i) => `token-${i}-${"x".repeat(20)}`)),
    );
    const data = new Uint8Array(4096 * 4).map((_, i) => i % 251);
    w.addTensor("t", "F32", [64, 64], data);
    const file = path.join(tmp, "big.gguf");
    await w.writeFile(file);
    for (const read of [() => readGgufFile(file), async () => readGgufFileSync(file)]) {
      const header = await read();
      expect(header.hasTensorData).toBe(false);
      expect(header.metadata.requireStringArray("big")[99_999]).toBe(
        `token-99999-${"x".repeat(20)}`,
      );
      expect(() => header.tensorData("t")).toThrowError(
        expect.objectContaining({ code: "GGUF_NO_TENSOR_DATA" }),
      );
    }
    const full = await readGgufFile(file, { tensorData: true });
    expect(full.tensorData("t")).toEqual(data);
    expect(readGgufFileSync(file, { tensorData: true }).tensorData("t")).toEqual(data);
  });

  it("gives typed accessors with clear errors", () => {
    const file = parseGguf(minimal().build());
    expect(() => file.metadata.requireString("missing.key")).toThrowError(
      expect.objectContaining({
        code: "GGUF_MISSING_KEY",
        message: expect.stringContaining("missing.key"),
      }),
    );
    expect(() => file.metadata.getString("test.block_count")).toThrowError(
      expect.objectContaining({
        code: "GGUF_WRONG_TYPE",
        message: expect.stringContaining("Received UINT32"),
      }),
    );
    expect(() => file.tensor("nope")).toThrowError(
      expect.objectContaining({ code: "GGUF_MISSING_TENSOR" }),
    );
  });
});

describe("parseGguf on malformed files", () => {
  it("rejects a bad magic", () => {
    const bytes = minimal().build();
    bytes[0] = 0x7b;
    const error = rejects(bytes, "GGUF_BAD_MAGIC", 0);
    expect(error.message).toContain("7b 47 55 46");
    rejects(new Uint8Array(0), "GGUF_TRUNCATED", 0);
  });

  it("rejects unsupported versions and big-endian files", () => {
    rejects(new Raw().header(0, 0, 1).build(), "GGUF_UNSUPPORTED_VERSION", 4);
    rejects(new Raw().header(0, 0, 4).build(), "GGUF_UNSUPPORTED_VERSION", 4);
    const be = rejects(new Raw().header(0, 0, 0x03000000).build(), "GGUF_BIG_ENDIAN", 4);
    expect(be.message).toContain("big-endian");
  });

  it("rejects truncation at every byte of a valid file", async () => {
    const w = new GgufWriter();
    w.set("general.architecture", gguf.string("x"))
      .set("arr", gguf.float32Array([1, 2, 3]))
      .set("strs", gguf.stringArray(["ab", "cd"]))
      .addTensor("w", "Q8_0", [32, 2], new Uint8Array(68));
    const bytes = await w.toBytes();
    const w_ = parseGguf(bytes).tensor("w");
    // Padding after the last tensor is optional, so every shorter prefix must be rejected.
    const end = w_.fileOffset + w_.byteSize;
    const codes = new Set<string>();
    for (let n = 0; n < end; n++) {
      try {
        parseGguf(bytes.subarray(0, n));
        throw new Error(`prefix of ${n} bytes parsed`);
      } catch (error) {
        expect(error).toBeInstanceOf(GgufError);
        const e = error as GgufError;
        codes.add(e.code);
        expect(["GGUF_TRUNCATED", "GGUF_LIMIT_EXCEEDED", "GGUF_TENSOR_OUT_OF_BOUNDS"]).toContain(
          e.code,
        );
        if (e.offset !== undefined) {
          expect(e.offset).toBeLessThanOrEqual(n);
        }
      }
    }
    expect(codes).toEqual(
      new Set(["GGUF_TRUNCATED", "GGUF_LIMIT_EXCEEDED", "GGUF_TENSOR_OUT_OF_BOUNDS"]),
    );
  });

  it("rejects absurd tensor and key counts before allocating", () => {
    rejects(new Raw().header(2n ** 63n, 0).build(), "GGUF_LIMIT_EXCEEDED", 8);
    rejects(new Raw().header(0, 2n ** 64n - 1n).build(), "GGUF_LIMIT_EXCEEDED", 16);
    // Within the limits but more than the file could hold.
    const e = rejects(new Raw().header(1000, 1000).zeros(100).build(), "GGUF_LIMIT_EXCEEDED", 8);
    expect(e.message).toContain("1000 metadata keys");
  });

  it("rejects absurd and overlong string lengths", () => {
    rejects(
      new Raw()
        .header(0, 1)
        .u64(2n ** 60n)
        .zeros(64)
        .build(),
      "GGUF_LIMIT_EXCEEDED",
      24,
    );
    rejects(
      new Raw().header(0, 1).u64(70_000).bytes(Buffer.alloc(70_000, 97)).build(),
      "GGUF_LIMIT_EXCEEDED",
      24,
    );
    rejects(
      new Raw().header(0, 1).str("key").u32(8).u64(10).bytes([65, 66]).build(),
      "GGUF_TRUNCATED",
      24 + 11 + 4 + 8,
    );
  });

  it("rejects absurd array lengths and deep nesting", () => {
    rejects(
      new Raw()
        .header(0, 1)
        .str("k")
        .u32(9)
        .u32(4)
        .u64(2n ** 40n)
        .build(),
      "GGUF_LIMIT_EXCEEDED",
      24 + 9 + 4 + 4,
    );
    // Within the limit but larger than the file: rejected before allocation.
    rejects(
      new Raw().header(0, 1).str("k").u32(9).u32(8).u64(1_000_000).zeros(64).build(),
      "GGUF_LIMIT_EXCEEDED",
    );
    const nested = new Raw().header(0, 1).str("k").u32(9);
    for (let depth = 0; depth < 5; depth++) {
      nested.u32(9).u64(1);
    }
    nested.u32(4).u64(0).zeros(64);
    const error = rejects(nested.build(), "GGUF_LIMIT_EXCEEDED");
    expect(error.message).toContain("nested");
  });

  it("rejects invalid UTF-8 in keys, values and tensor names", () => {
    rejects(
      new Raw().header(0, 1).str(Uint8Array.of(0x61, 0xff)).u32(4).u32(1).build(),
      "GGUF_INVALID_UTF8",
      32,
    );
    rejects(
      new Raw().header(0, 1).str("k").u32(8).str(Uint8Array.of(0xc3, 0x28)).build(),
      "GGUF_INVALID_UTF8",
    );
    rejects(
      new Raw()
        .header(0, 1)
        .str("k")
        .u32(8)
        .str(Uint8Array.of(0xed, 0xa0, 0x80))
        .build(),
      "GGUF_INVALID_UTF8",
    );
    rejects(
      new Raw()
        .header(1, 0)
        .str(Uint8Array.of(0xe2, 0x82))
        .u32(1)
        .u64(4)
        .u32(0)
        .u64(0)
        .padTo(32)
        .zeros(16)
        .build(),
      "GGUF_INVALID_UTF8",
    );
    // In a string array (read as bytes, validated without decoding): the second element.
    const inArray = rejects(
      new Raw()
        .header(0, 1)
        .str("k")
        .u32(9)
        .u32(8)
        .u64(2)
        .str("ok")
        .str(Uint8Array.of(0xf4, 0x90, 0x80, 0x80))
        .build(),
      "GGUF_INVALID_UTF8",
    );
    expect(inArray.message).toContain('element 1 of array "k"');
  });

  it("rejects empty and duplicate keys", () => {
    rejects(new Raw().header(0, 1).str("").u32(4).u32(1).build(), "GGUF_EMPTY_KEY", 24);
    const dup = new Raw().header(0, 2).kvU32("a.b", 1);
    const second = dup.length;
    dup.kvU32("a.b", 2);
    const error = rejects(dup.build(), "GGUF_DUPLICATE_KEY", second);
    expect(error.message).toContain('"a.b"');
  });

  it("rejects unknown value types and invalid bools", () => {
    rejects(
      new Raw().header(0, 1).str("k").u32(13).u32(0).build(),
      "GGUF_INVALID_VALUE_TYPE",
      24 + 9,
    );
    rejects(
      new Raw().header(0, 1).str("k").u32(9).u32(99).u64(0).build(),
      "GGUF_INVALID_VALUE_TYPE",
      24 + 9 + 4,
    );
    rejects(new Raw().header(0, 1).str("k").u32(7).u8(2).build(), "GGUF_INVALID_BOOL", 24 + 9 + 4);
    rejects(
      new Raw().header(0, 1).str("k").u32(9).u32(7).u64(2).u8(1).u8(5).build(),
      "GGUF_INVALID_BOOL",
    );
  });

  it("rejects a wrongly typed or non-power-of-two general.alignment", () => {
    const typed = new Raw().header(0, 1).str("general.alignment").u32(10).u64(32).build();
    expect(rejects(typed, "GGUF_BAD_ALIGNMENT").message).toContain("UINT32");
    rejects(new Raw().header(0, 1).kvU32("general.alignment", 48).build(), "GGUF_BAD_ALIGNMENT");
    rejects(new Raw().header(0, 1).kvU32("general.alignment", 0).build(), "GGUF_BAD_ALIGNMENT");
  });

  it("rejects duplicate, empty and overlong tensor names", () => {
    const dup = new Raw().header(2, 0).tensorInfo("t", [4], 0, 0);
    const at = dup.length;
    dup.tensorInfo("t", [4], 0, 32).padTo(32).zeros(64);
    rejects(dup.build(), "GGUF_DUPLICATE_TENSOR", at);
    rejects(
      new Raw().header(1, 0).tensorInfo("", [4], 0, 0).padTo(32).zeros(16).build(),
      "GGUF_BAD_TENSOR_NAME",
      24,
    );
    const long = "x".repeat(64);
    rejects(
      new Raw().header(1, 0).tensorInfo(long, [4], 0, 0).padTo(32).zeros(16).build(),
      "GGUF_BAD_TENSOR_NAME",
      24,
    );
    // 63 bytes is the longest name llama.cpp accepts.
    expect(
      parseGguf(
        new Raw().header(1, 0).tensorInfo("y".repeat(63), [4], 0, 0).padTo(32).zeros(16).build(),
      ).tensors,
    ).toHaveLength(1);
  });

  it("rejects more than 4 dimensions", () => {
    const error = rejects(
      new Raw().header(1, 0).tensorInfo("t", [1, 1, 1, 1, 1], 0, 0).padTo(32).zeros(32).build(),
      "GGUF_TOO_MANY_DIMS",
      24 + 9,
    );
    expect(error.message).toContain("5 dimensions");
  });

  it("rejects overflowing shapes", () => {
    rejects(
      new Raw()
        .header(1, 0)
        .tensorInfo("t", [2n ** 32n, 2n ** 32n, 2n ** 32n], 0, 0)
        .padTo(32)
        .build(),
      "GGUF_SHAPE_OVERFLOW",
    );
    rejects(
      new Raw()
        .header(1, 0)
        .tensorInfo("t", [2n ** 60n], 0, 0)
        .padTo(32)
        .build(),
      "GGUF_SHAPE_OVERFLOW",
    );
  });

  it("rejects unknown tensor types, naming the id", () => {
    const error = rejects(
      new Raw().header(1, 0).tensorInfo("t", [256], 39, 0).padTo(32).zeros(256).build(),
      "GGUF_UNKNOWN_TENSOR_TYPE",
      24 + 9 + 4 + 8,
    );
    expect(error.message).toContain("type id 39");
  });

  it("rejects row lengths that are not a multiple of the block size", () => {
    rejects(
      new Raw().header(1, 0).tensorInfo("q", [33, 2], 8, 0).padTo(32).zeros(128).build(),
      "GGUF_BAD_ROW_LENGTH",
    );
    const i2s = rejects(
      new Raw().header(1, 0).tensorInfo("w", [100, 4], 36, 0).padTo(32).zeros(256).build(),
      "GGUF_BAD_ROW_LENGTH",
    );
    expect(i2s.message).toContain("I2_S block size 128");
  });

  it("rejects tensor data out of bounds", () => {
    const error = rejects(
      new Raw().header(1, 0).tensorInfo("t", [64], 0, 0).padTo(32).zeros(100).build(),
      "GGUF_TENSOR_OUT_OF_BOUNDS",
      24,
    );
    expect(error.message).toContain('"t"');
    rejects(
      new Raw()
        .header(1, 0)
        .tensorInfo("t", [4], 0, 2n ** 62n)
        .padTo(32)
        .zeros(16)
        .build(),
      "GGUF_TENSOR_OUT_OF_BOUNDS",
    );
  });

  it("rejects misaligned tensor offsets", () => {
    rejects(
      new Raw().header(1, 0).tensorInfo("t", [4], 0, 4).padTo(32).zeros(32).build(),
      "GGUF_TENSOR_MISALIGNED",
      24 + 9 + 4 + 8 + 4,
    );
  });

  it("rejects overlapping tensors", () => {
    const raw = new Raw().header(2, 0).tensorInfo("a", [16], 0, 0);
    const at = raw.length;
    raw.tensorInfo("b", [4], 0, 32).padTo(32).zeros(64);
    rejects(raw.build(), "GGUF_TENSOR_OVERLAP", at);
  });

  it("reports missing files and directories as GGUF_IO", async () => {
    await expect(readGgufFile(path.join(tmp, "nope.gguf"))).rejects.toMatchObject({
      code: "GGUF_IO",
      message: expect.stringContaining("no such file"),
    });
    expect(() => readGgufFileSync(tmp)).toThrowError(expect.objectContaining({ code: "GGUF_IO" }));
    await expect(readGgufFile(tmp)).rejects.toMatchObject({ code: "GGUF_IO" });
  });
});
