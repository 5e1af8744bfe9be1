import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { isBitnetError } from "@bitnet-ts/errors";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SafetensorsError } from "./errors";
import { openSafetensors, parseSafetensors } from "./reader";
import { openShardedSafetensors } from "./sharded";
import { encodeSafetensors } from "./writer";

const sample = () =>
  encodeSafetensors(
    [
      { name: "a.weight", dtype: "BF16", shape: [2, 3], data: new Uint8Array(12).map((_, i) => i) },
      {
        name: "b.weight_scale",
        dtype: "F32",
        shape: [1],
        data: new Uint8Array(new Float32Array([0.5]).buffer),
      },
      { name: "c", dtype: "U8", shape: [4, 2], data: new Uint8Array(8).fill(7) },
    ],
    { format: "pt" },
  );

function header(json: string, data = 0): Uint8Array {
  const head = Buffer.from(json);
  const out = new Uint8Array(8 + head.length + data);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  return out;
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return isBitnetError(error) ? error.code : `untyped: ${String(error)}`;
  }
  return undefined;
}

describe("safetensors", () => {
  it("round-trips tensors and metadata, in memory (views) and on disk (reads)", () => {
    const bytes = sample();
    const file = parseSafetensors(bytes);
    expect(file.metadata).toEqual({ format: "pt" });
    expect([...file.tensors.keys()]).toEqual(["a.weight", "b.weight_scale", "c"]);
    expect(file.tensors.get("a.weight")!.shape).toEqual([2, 3]);
    expect([...file.read("a.weight")]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(file.read("c").buffer).toBe(bytes.buffer); // zero-copy
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "st-"));
    try {
      fs.writeFileSync(path.join(dir, "model.safetensors"), bytes);
      const disk = openShardedSafetensors(dir);
      expect(new Float32Array(disk.read("b.weight_scale").slice().buffer)[0]).toBe(0.5);
      disk.close();
      expect(code(() => disk.read("c"))).toBe("SAFETENSORS_IO");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reads sharded checkpoints through their index, and rejects a bad one", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "st-"));
    try {
      fs.writeFileSync(
        path.join(dir, "s1.safetensors"),
        encodeSafetensors([{ name: "x", dtype: "U8", shape: [2], data: Uint8Array.of(1, 2) }]),
      );
      fs.writeFileSync(
        path.join(dir, "s2.safetensors"),
        encodeSafetensors([{ name: "y", dtype: "U8", shape: [1], data: Uint8Array.of(3) }]),
      );
      const index = path.join(dir, "model.safetensors.index.json");
      fs.writeFileSync(
        index,
        JSON.stringify({ weight_map: { x: "s1.safetensors", y: "s2.safetensors" } }),
      );
      const file = openShardedSafetensors(dir);
      expect([...file.read("y")]).toEqual([3]);
      file.close();
      fs.writeFileSync(index, JSON.stringify({ weight_map: { x: "../etc/passwd" } }));
      expect(code(() => openShardedSafetensors(dir))).toBe("SAFETENSORS_BAD_INDEX");
      fs.writeFileSync(index, JSON.stringify({ weight_map: { z: "s1.safetensors" } }));
      expect(code(() => openShardedSafetensors(dir))).toBe("SAFETENSORS_BAD_INDEX");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  const hostile: [string, Uint8Array, string][] = [
    ["fewer than 8 bytes", Uint8Array.of(1, 2, 3), "SAFETENSORS_TRUNCATED"],
    [
      "a header length past the end",
      header("{}").map((b, i) => (i === 0 ? 200 : b)),
      "SAFETENSORS_TRUNCATED",
    ],
    [
      "an absurd header length",
      Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 1, 123),
      "SAFETENSORS_HEADER_TOO_LARGE",
    ],
    ["a header that is not JSON", header("{nope"), "SAFETENSORS_BAD_HEADER"],
    ["a header that is an array", header("[1]"), "SAFETENSORS_BAD_HEADER"],
    ["invalid UTF-8", Uint8Array.of(2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe), "SAFETENSORS_BAD_HEADER"],
    [
      "a duplicate tensor name",
      header(
        '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}',
        2,
      ),
      "SAFETENSORS_BAD_HEADER",
    ],
    [
      "an unknown dtype",
      header('{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}', 1),
      "SAFETENSORS_BAD_TENSOR",
    ],
    [
      "a negative dimension",
      header('{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}', 1),
      "SAFETENSORS_BAD_TENSOR",
    ],
    [
      "too many dimensions",
      header('{"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}}', 1),
      "SAFETENSORS_BAD_TENSOR",
    ],
    [
      "an overflowing shape",
      header('{"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,1]}}', 1),
      "SAFETENSORS_BAD_TENSOR",
    ],
    [
      "reversed offsets",
      header('{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,0]}}', 1),
      "SAFETENSORS_BAD_TENSOR",
    ],
    [
      "a size that does not match the shape",
      header('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', 4),
      "SAFETENSORS_SIZE_MISMATCH",
    ],
    [
      "data past the end",
      header('{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}', 4),
      "SAFETENSORS_OUT_OF_BOUNDS",
    ],
    [
      "overlapping tensors",
      header(
        '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}',
        6,
      ),
      "SAFETENSORS_OUT_OF_BOUNDS",
    ],
    ["non-string metadata", header('{"__metadata__":{"a":1}}'), "SAFETENSORS_BAD_HEADER"],
  ];
  it.each(hostile)("rejects %s with a typed error", (_what, bytes, expected) => {
    expect(code(() => parseSafetensors(bytes))).toBe(expected);
  });

  it("only ever throws SafetensorsError on mutated or truncated files", () => {
    const base = sample();
    fc.assert(
      fc.property(
        fc.nat(base.length - 1),
        fc.integer({ min: 0, max: 255 }),
        fc.nat(base.length),
        (at, value, cut) => {
          const bytes = base.slice(0, Math.max(cut, 1));
          if (at < bytes.length) {
            bytes[at] = value;
          }
          try {
            const file = parseSafetensors(bytes);
            for (const name of file.tensors.keys()) {
              file.read(name);
            }
          } catch (error) {
            expect(error).toBeInstanceOf(SafetensorsError);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("reports a missing file as an IO error", () => {
    expect(code(() => openSafetensors("/nonexistent/model.safetensors"))).toBe("SAFETENSORS_IO");
  });
});
