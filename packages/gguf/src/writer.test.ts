import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { gguf as hfGguf } from "@huggingface/gguf";
import { afterAll, describe, expect, it } from "vitest";
import { GgufValueType, gguf } from "./metadata";
import { GgufWriter } from "./node/writer";
import { parseGguf } from "./reader";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gguf-writer-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("GgufWriter", () => {
  it("lays tensors out contiguously, aligned and zero-padded", async () => {
    const w = new GgufWriter();
    w.set("general.architecture", gguf.string("x"));
    w.addTensor("a", "F32", [3], new Uint8Array(12).fill(1));
    w.addTensor("b", "I2_S", [128, 2], new Uint8Array(64 + 32).fill(2));
    w.addTensor("c", "TQ2_0", [256], new Uint8Array(66).fill(3));
    const bytes = await w.toBytes();
    expect(bytes.length).toBe(w.byteLength);
    const file = parseGguf(bytes);
    expect(file.dataOffset % 32).toBe(0);
    expect(file.tensors.map((t) => [t.name, t.offset, t.byteSize])).toEqual([
      ["a", 0, 12],
      ["b", 32, 96],
      ["c", 128, 66],
    ]);
    // Padding between tensors is zero.
    expect(Array.from(bytes.subarray(file.dataOffset + 12, file.dataOffset + 32))).toEqual(
      new Array(20).fill(0),
    );
    expect(bytes.length).toBe(file.dataOffset + 128 + 96);
  });

  it("streams chunked tensor data to a file and reports progress", async () => {
    const w = new GgufWriter();
    const rows = 64;
    w.addTensor("big", "F16", [1024, rows], function* () {
      for (let r = 0; r < rows; r++) {
        yield new Uint8Array(2048).fill(r);
      }
    });
    const file = path.join(tmp, "chunked.gguf");
    const progress: number[] = [];
    await w.writeFile(file, { onProgress: (done, total) => progress.push(done / total) });
    expect(progress.at(-1)).toBe(1);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    const parsed = parseGguf(new Uint8Array(fs.readFileSync(file)));
    const data = parsed.tensorData("big");
    expect(data[2048 * 5]).toBe(5);
    expect(data[2048 * 64 - 1]).toBe(63);
  });

  it("writes the same bytes as toBytes across many buffer flushes, whatever the chunk sizes", async () => {
    const w = new GgufWriter();
    w.set("general.architecture", gguf.string("x"));
    // 19 MiB + a bit in chunks of odd sizes, then a tensor larger than the 8 MiB buffer in one piece.
    const elements = (19 << 20) + 96;
    const chunkSizes = [1, 4093, 65_537, 3 << 20, 9 << 20];
    w.addTensor("odd", "F32", [elements / 4], function* () {
      let made = 0;
      for (let i = 0; made < elements; i++) {
        const n = Math.min(chunkSizes[i % chunkSizes.length]!, elements - made);
        const chunk = new Uint8Array(n);
        for (let j = 0; j < n; j++) {
          chunk[j] = (made + j) * 7 + 3;
        }
        made += n;
        yield chunk;
      }
    });
    const whole = new Uint8Array(9 << 20).map((_, i) => i * 13);
    w.addTensor("whole", "F32", [whole.length / 4], whole);
    const file = path.join(tmp, "flushes.gguf");
    await w.writeFile(file);
    const written = new Uint8Array(fs.readFileSync(file));
    const expected = await w.toBytes();
    expect(written.length).toBe(expected.length);
    expect(Buffer.compare(Buffer.from(written), Buffer.from(expected))).toBe(0);
  });

  it("never leaves a partial file when a tensor produces the wrong size", async () => {
    const file = path.join(tmp, "partial.gguf");
    for (const produced of [100, 300]) {
      const w = new GgufWriter();
      w.addTensor("t", "F32", [50], function* () {
        yield new Uint8Array(produced);
      });
      await expect(w.writeFile(file)).rejects.toMatchObject({ code: "GGUF_INVALID_WRITE" });
      expect(fs.existsSync(file)).toBe(false);
    }
    expect(fs.readdirSync(tmp).filter((f) => f.includes("partial"))).toEqual([]);
  });

  it("rejects what it cannot write with GGUF_INVALID_WRITE", () => {
    const w = new GgufWriter();
    const bad = expect.objectContaining({ code: "GGUF_INVALID_WRITE" });
    expect(() => w.addTensor("t", "Q8_0", [33], new Uint8Array(0))).toThrowError(bad);
    expect(() => w.addTensor("t", "F32", [4], new Uint8Array(15))).toThrowError(bad);
    expect(() => w.addTensor("x".repeat(64), "F32", [1], new Uint8Array(4))).toThrowError(bad);
    expect(() => w.addTensor("t", "F32", [1, 1, 1, 1, 1], new Uint8Array(4))).toThrowError(bad);
    expect(() => w.addTensor("t", "NOPE", [1], new Uint8Array(4))).toThrowError(bad);
    w.addTensor("t", "F32", [1], new Uint8Array(4));
    expect(() => w.addTensor("t", "F32", [1], new Uint8Array(4))).toThrowError(bad);
    expect(() => w.set("", gguf.uint32(1))).toThrowError(bad);
    expect(() => w.set("k", gguf.uint8(256))).toThrowError(bad);
    expect(() => w.set("k", gguf.int32(1.5))).toThrowError(bad);
    expect(() => w.set("k", gguf.uint64(-1n))).toThrowError(bad);
    expect(() => w.set("k", gguf.string("\ud800"))).toThrowError(bad);
    expect(() => w.set("k", gguf.array(GgufValueType.FLOAT32, new Int32Array(2)))).toThrowError(
      bad,
    );
    expect(() => w.set("general.alignment", gguf.uint32(64))).toThrowError(bad);
    expect(() => new GgufWriter({ alignment: 24 })).toThrowError(bad);
  });

  it("writes files that @huggingface/gguf (an independent parser) reads the same way", async () => {
    const w = new GgufWriter();
    w.set("general.architecture", gguf.string("bitnet-b1.58"))
      .set("bitnet-b1.58.block_count", gguf.uint32(2))
      .set("bitnet-b1.58.rope.freq_base", gguf.float32(500000))
      .set("general.size", gguf.uint64(1234567890123n))
      .set("general.flag", gguf.bool(true))
      .set("tokenizer.ggml.tokens", gguf.stringArray(["a", "b", "Ġc"]))
      .set("tokenizer.ggml.scores", gguf.float32Array([0, -1, -2]))
      .set("tokenizer.ggml.token_type", gguf.int32Array([1, 1, 3]));
    w.addTensor("token_embd.weight", "F16", [64, 3], new Uint8Array(384));
    w.addTensor("blk.0.attn_q.weight", "TQ2_0", [256, 4], new Uint8Array(264));
    w.addTensor("output_norm.weight", "F32", [64], new Uint8Array(256));
    const file = path.join(tmp, "interop.gguf");
    await w.writeFile(file);
    const theirs = await hfGguf(file, { allowLocalFile: true });
    const theirMetadata = theirs.metadata as Record<string, unknown>;
    expect(theirMetadata["general.architecture"]).toBe("bitnet-b1.58");
    expect(theirMetadata["bitnet-b1.58.block_count"]).toBe(2);
    expect(theirMetadata["bitnet-b1.58.rope.freq_base"]).toBe(500000);
    expect(theirMetadata["general.size"]).toBe(1234567890123n);
    expect(theirMetadata["general.flag"]).toBe(true);
    expect(theirMetadata["tokenizer.ggml.tokens"]).toEqual(["a", "b", "Ġc"]);
    expect(theirMetadata["tokenizer.ggml.token_type"]).toEqual([1, 1, 3]);
    const ours = parseGguf(new Uint8Array(fs.readFileSync(file)));
    expect(
      theirs.tensorInfos.map((t) => [t.name, t.shape.map(Number), t.dtype, Number(t.offset)]),
    ).toEqual(ours.tensors.map((t) => [t.name, t.shape, t.type.id, t.offset]));
    expect(theirs.tensorDataOffset).toBe(BigInt(ours.dataOffset));
  });
});
