import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serve, type TestServer } from "../test/http-server";
import * as browser from "./browser";
import { openHttpSource } from "./http-source";
import { gguf } from "./metadata";
import { readGgufFile, readGgufFileSync } from "./node/file";
import { openFileSource } from "./node/file-source";
import { GgufWriter } from "./node/writer";
import { FIRST_READ_BYTES, readGgufFrom } from "./read";
import { type GgufFile, parseGguf } from "./reader";
import { type ByteSource, blobSource, bytesSource } from "./source";
import { GgufWriter as PortableGgufWriter } from "./writer";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gguf-source-"));
const file = path.join(tmp, "model.gguf");
let bytes: Uint8Array;
let reference: GgufFile;
const servers: TestServer[] = [];

/**
 * A file whose header (~1.8 MB of strings) needs more than the first 1 MiB read, with tensor data
 * (~1 MB) beyond the second read.
 */
function writer(): GgufWriter {
  const w = new GgufWriter();
  w.set("general.architecture", gguf.string("test"));
  w.set(
    "tokens",
    gguf.stringArray(Array.from({ length: 50_000 }, (_, i) => `token-${i}-${"é".repeat(8)}`)),
  );
  w.addTensor(
    "a",
    "F32",
    [64, 4096],
    new Uint8Array(64 * 4096 * 4).map((_, i) => i % 251),
  );
  w.addTensor(
    "b",
    "F16",
    [32],
    new Uint8Array(64).map((_, i) => 255 - i),
  );
  w.addTensor(
    "c",
    "Q8_0",
    [64, 2],
    new Uint8Array(2 * 2 * 34).map((_, i) => (i * 7) % 256),
  );
  return w;
}

beforeAll(async () => {
  await writer().writeFile(file);
  bytes = new Uint8Array(fs.readFileSync(file));
  reference = await readGgufFile(file, { tensorData: true });
  expect(reference.dataOffset).toBeGreaterThan(FIRST_READ_BYTES);
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function server(options?: Parameters<typeof serve>[1]): Promise<TestServer> {
  const s = await serve(bytes, options);
  servers.push(s);
  return s;
}

/** Wraps a source to record every read, to check what the reader asks for. */
function counting(source: ByteSource): { source: ByteSource; reads: [number, number][] } {
  const reads: [number, number][] = [];
  return {
    reads,
    source: {
      size: source.size,
      read: (offset, length) => {
        reads.push([offset, length]);
        return source.read(offset, length);
      },
    },
  };
}

/** toEqual walks a megabyte element by element for seconds; this compares it at once. */
function expectSameBytes(got: Uint8Array, want: Uint8Array): void {
  expect(got.length).toBe(want.length);
  expect(Buffer.compare(got, want)).toBe(0);
}

async function expectSameAsReference(got: GgufFile): Promise<void> {
  expect(got.version).toBe(reference.version);
  expect(got.dataOffset).toBe(reference.dataOffset);
  expect(got.fileSize).toBe(reference.fileSize);
  const keys = [...reference.metadata.keys()];
  expect([...got.metadata.keys()]).toEqual(keys);
  expect(got.metadata.requireStringArray("tokens").join("\n")).toBe(
    reference.metadata.requireStringArray("tokens").join("\n"),
  );
  expect(got.tensors).toEqual(reference.tensors);
  for (const t of reference.tensors) {
    expectSameBytes(await got.readTensorData(t.name), reference.tensorData(t));
  }
}

describe("readGgufFrom", () => {
  const sources: [string, () => Promise<ByteSource>][] = [
    ["an ArrayBuffer", async () => bytesSource(bytes.slice().buffer)],
    [
      "a Uint8Array view at an offset",
      async () => {
        const padded = new Uint8Array(bytes.length + 3);
        padded.set(bytes, 3);
        return bytesSource(padded.subarray(3));
      },
    ],
    ["a Blob", async () => blobSource(new Blob([bytes]))],
    ["a File", async () => blobSource(new File([bytes], "model.gguf"))],
    ["a file descriptor", () => openFileSource(file)],
    ["HTTP range requests", async () => openHttpSource((await server()).url)],
    [
      "HTTP range requests without a readable Content-Range",
      async () => openHttpSource((await server({ contentRange: false })).url),
    ],
    [
      "a server without range support (a small file, downloaded once)",
      async () => openHttpSource((await server({ ranges: false })).url),
    ],
  ];

  it.each(sources)("reads %s like readGgufFile, tensor by tensor", async (_, open) => {
    const source = await open();
    try {
      const header = await readGgufFrom(source);
      expect(header.hasTensorData).toBe(false);
      await expectSameAsReference(header);
      const whole = await readGgufFrom(source, { tensorData: true });
      expect(whole.hasTensorData).toBe(true);
      await expectSameAsReference(whole);
    } finally {
      await source.close?.();
    }
  });

  it("reads the header in growing reads, never a byte twice, and no tensor data", async () => {
    const { source, reads } = counting(bytesSource(bytes));
    const header = await readGgufFrom(source);
    expect(reads[0]).toEqual([0, FIRST_READ_BYTES]);
    let end = 0;
    for (const [offset, length] of reads) {
      expect(offset).toBe(end);
      end += length;
    }
    expect(end).toBeLessThan(bytes.length);
    reads.length = 0;
    const t = header.tensor("c");
    await header.readTensorData(t);
    expect(reads).toEqual([[t.fileOffset, t.byteSize]]);
  });

  it("rejects a source that returns the wrong number of bytes, or throws, as GGUF_IO", async () => {
    const short: ByteSource = {
      size: bytes.length,
      name: "short.gguf",
      read: async (offset, length) => bytes.subarray(offset, offset + length - 1),
    };
    await expect(readGgufFrom(short)).rejects.toMatchObject({
      code: "GGUF_IO",
      message: expect.stringContaining('from "short.gguf" - asked for 1048576 bytes at offset 0'),
    });
    const failing: ByteSource = {
      size: bytes.length,
      read: async () => {
        throw new Error("disk on fire");
      },
    };
    await expect(readGgufFrom(failing)).rejects.toMatchObject({
      code: "GGUF_IO",
      message: expect.stringContaining("disk on fire"),
    });
    await expect(readGgufFrom({ size: -1, read: async () => bytes })).rejects.toMatchObject({
      code: "GGUF_IO",
    });
  });

  it("validates like parseGguf: a truncated source is GGUF_TRUNCATED", async () => {
    const cut = bytes.subarray(0, reference.tensors[1]!.infoOffset + 3);
    await expect(readGgufFrom(bytesSource(cut))).rejects.toMatchObject({
      code: "GGUF_TRUNCATED",
    });
  });
});

describe("readGgufFile and parseGguf", () => {
  it("read tensors on demand from a header-only file read by path (reopening it)", async () => {
    for (const header of [await readGgufFile(file), readGgufFileSync(file)]) {
      expect(header.hasTensorData).toBe(false);
      expect(header.source?.name).toBe(file);
      await expectSameAsReference(header);
    }
  });

  it("refuses to read tensors of a file that changed on disk since its header was read", async () => {
    const copy = path.join(tmp, "changing.gguf");
    fs.copyFileSync(file, copy);
    const header = await readGgufFile(copy);
    fs.appendFileSync(copy, new Uint8Array(32));
    await expect(header.readTensorData("a")).rejects.toMatchObject({
      code: "GGUF_IO",
      message: expect.stringContaining("It changed on disk"),
    });
  });

  it("readTensorData resolves views of a file in memory, and fails on a bare header", async () => {
    const whole = parseGguf(bytes);
    expect(await whole.readTensorData("b")).toEqual(reference.tensorData("b"));
    const header = parseGguf(bytes.subarray(0, reference.dataOffset), { fileSize: bytes.length });
    await expect(header.readTensorData("b")).rejects.toMatchObject({
      code: "GGUF_NO_TENSOR_DATA",
    });
  });
});

describe("openFileSource", () => {
  it("reads ranges and fails clearly after close or on a missing file", async () => {
    const source = await openFileSource(file);
    expect(source.size).toBe(bytes.length);
    expect(await source.read(100, 50)).toEqual(bytes.subarray(100, 150));
    await source.close();
    await source.close();
    await expect(source.read(0, 4)).rejects.toMatchObject({ code: "GGUF_IO" });
    await expect(openFileSource(path.join(tmp, "nope.gguf"))).rejects.toMatchObject({
      code: "GGUF_IO",
      message: expect.stringContaining("no such file"),
    });
  });
});

describe("openHttpSource", () => {
  it("asks for the size with one byte, then one range request per read", async () => {
    const s = await server();
    const source = await openHttpSource(s.url);
    expect(source.size).toBe(bytes.length);
    expect(source.name).toBe(s.url);
    expect(await source.read(1000, 24)).toEqual(bytes.subarray(1000, 1024));
    expect(s.requests).toEqual([
      { method: "GET", range: "bytes=0-0" },
      { method: "GET", range: "bytes=1000-1023" },
    ]);
  });

  it("skips the size request when given the size, and keeps the query out of messages", async () => {
    const s = await server();
    const source = await openHttpSource(`${s.url}?token=secret`, { size: bytes.length });
    expect(await source.read(0, 4)).toEqual(bytes.subarray(0, 4));
    expect(s.requests).toEqual([{ method: "GET", range: "bytes=0-3" }]);
    expect(source.name).not.toContain("secret");
  });

  it("refuses a large file from a server without range support (GGUF_RANGE_UNSUPPORTED)", async () => {
    const s = await server({ ranges: false });
    await expect(openHttpSource(s.url, { maxFullDownloadBytes: 1 << 20 })).rejects.toMatchObject({
      code: "GGUF_RANGE_UNSUPPORTED",
      message: expect.stringContaining("ignores HTTP range requests"),
    });
    // Told the size, it learns only at the first read that ranges are ignored.
    const sized = await openHttpSource(s.url, { size: bytes.length });
    await expect(sized.read(10, 10)).rejects.toMatchObject({ code: "GGUF_RANGE_UNSUPPORTED" });
  });

  it("fails reads once the file changed on the server (size or ETag)", async () => {
    let etag = '"v1"';
    const s = await server({ etag: () => etag });
    const source = await openHttpSource(s.url);
    expect(await source.read(0, 8)).toEqual(bytes.subarray(0, 8));
    etag = '"v2"';
    await expect(source.read(0, 8)).rejects.toMatchObject({
      code: "GGUF_IO",
      message: expect.stringContaining("changed on the server"),
    });
    etag = '"v1"';
    s.setBytes(bytes.subarray(0, bytes.length - 32));
    await expect(source.read(0, 8)).rejects.toMatchObject({
      code: "GGUF_IO",
      message: expect.stringContaining("changed on the server"),
    });
  });

  it("reports HTTP errors and unreachable servers as GGUF_IO", async () => {
    const s = await server();
    await expect(openHttpSource(s.url.replace("model.gguf", "other.gguf"))).rejects.toMatchObject({
      code: "GGUF_IO",
      message: expect.stringContaining("HTTP 404"),
    });
    const url = s.url;
    await s.close();
    servers.splice(servers.indexOf(s), 1);
    await expect(openHttpSource(url)).rejects.toMatchObject({
      code: "GGUF_IO",
      message: expect.stringContaining("could not fetch"),
    });
  });
});

describe("the browser entry", () => {
  it("has the Node entry's exports, with the Node-only ones throwing GGUF_NODE_ONLY", async () => {
    const node = await import("./index");
    expect(Object.keys(browser).sort()).toEqual(Object.keys(node).sort());
    await expect(browser.readGgufFile("model.gguf")).rejects.toMatchObject({
      code: "GGUF_NODE_ONLY",
      message: expect.stringContaining("readGgufFrom(blobSource(file))"),
    });
    expect(() => browser.readGgufFileSync("model.gguf")).toThrowError(
      expect.objectContaining({ code: "GGUF_NODE_ONLY" }),
    );
    await expect(browser.openFileSource("model.gguf")).rejects.toMatchObject({
      code: "GGUF_NODE_ONLY",
    });
  });

  it("writes with writeTo and toBytes; writeFile throws GGUF_NODE_ONLY", async () => {
    const w = new PortableGgufWriter();
    w.set("general.architecture", gguf.string("test"));
    w.addTensor("a", "F32", [8], new Uint8Array(32).fill(1));
    const chunks: Uint8Array[] = [];
    const progress: number[] = [];
    await w.writeTo((chunk) => void chunks.push(chunk.slice()), {
      onProgress: (done) => void progress.push(done),
    });
    const streamed = new Uint8Array(await new Blob(chunks).arrayBuffer());
    expect(streamed).toEqual(await w.toBytes());
    expect(progress.at(-1)).toBe(w.byteLength);
    await expect(w.writeFile(path.join(tmp, "x.gguf"))).rejects.toMatchObject({
      code: "GGUF_NODE_ONLY",
    });
  });
});
