/**
 * Models described from byte sources (what a browser has: a File, an HTTP URL, bytes in memory)
 * are the model described from its path: the same tensors, the same bytes, the same logits.
 */
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import {
  type ByteSource,
  blobSource,
  bytesSource,
  openFileSource,
  openHttpSource,
} from "@bitnet-ts/gguf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanup, fixture } from "../test/models";
import type { CompiledModel, LoadProgress } from "./backend";
import { type ModelDescription, readModelDescription, readModelDescriptionFrom } from "./model";
import { ReferenceBackend } from "./reference/backend";

const TOKENS = [128000, 791, 6864, 315, 9822, 374];

let file: string;
let bytes: Uint8Array;
let reference: ModelDescription;
let referenceLogits: Float32Array[];
let server: http.Server;
let url: string;

/**
 * Logits compared bit for bit. toEqual on 128k-float rows is slow, and its diff of a mismatch is
 * large enough to take the worker down; this names the first differing row and index instead.
 */
function expectSameLogits(got: Float32Array[], want: Float32Array[]): void {
  expect(got.length).toBe(want.length);
  got.forEach((row, r) => {
    const w = want[r]!;
    expect(row.length).toBe(w.length);
    const i = row.findIndex((v, j) => !Object.is(v, w[j]));
    expect(i < 0 ? "same" : `row ${r} differs at ${i}: ${row[i]} vs ${w[i]}`).toBe("same");
  });
}

/** Both are views of the same bytes in memory (no copy). */
function expectSameView(got: Uint8Array, want: Uint8Array): void {
  expect(got.buffer === want.buffer).toBe(true);
  expect([got.byteOffset, got.length]).toEqual([want.byteOffset, want.length]);
}

/** Logits of a prompt, then of two more tokens one at a time (prefill and decode paths). */
async function logitsOf(model: CompiledModel): Promise<Float32Array[]> {
  const sequence = model.createSequence();
  const out: Float32Array[] = [];
  for (const tokens of [TOKENS, [42], [1000]]) {
    const { runs } = await model.step([{ sequence, tokens }]);
    out.push(runs[0]!.logits.slice());
  }
  await model.dispose();
  return out;
}

beforeAll(async () => {
  file = await fixture("tiny-i2s");
  bytes = new Uint8Array(fs.readFileSync(file));
  reference = await readModelDescription(file);
  referenceLogits = await logitsOf(await new ReferenceBackend().compile(reference));
  // A static file server with range requests, like any CDN.
  server = http.createServer((req, res) => {
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "");
    if (m === null) {
      res.writeHead(200, { "Content-Length": String(bytes.length) }).end(bytes);
      return;
    }
    const [start, end] = [Number(m[1]), Math.min(Number(m[2]), bytes.length - 1)];
    res.writeHead(206, { "Content-Range": `bytes ${start}-${end}/${bytes.length}` });
    res.end(bytes.subarray(start, end + 1));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/tiny-i2s.gguf`;
}, 120_000);

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  cleanup();
});

describe("readModelDescriptionFrom", () => {
  const sources: [string, () => Promise<ByteSource>][] = [
    ["an ArrayBuffer", async () => bytesSource(bytes.slice().buffer)],
    ["a Blob", async () => blobSource(new Blob([bytes]))],
    ["a file descriptor", () => openFileSource(file)],
    ["HTTP range requests", () => openHttpSource(url)],
  ];

  it.each(sources)(
    "from %s gives the same tensors, bytes and reference logits",
    {
      timeout: 120_000,
    },
    async (_, open) => {
      const source = await open();
      try {
        const description = await readModelDescriptionFrom(source);
        expect(description.path).toBeUndefined();
        expect(description.hparams).toEqual(reference.hparams);
        expect(description.graph).toEqual(reference.graph);
        expect([...description.tensors.keys()]).toEqual([...reference.tensors.keys()]);
        for (const [name, tensor] of description.tensors) {
          const want = reference.tensors.get(name)!;
          expect(tensor.info).toEqual(want.info);
          const got = await tensor.read();
          expect(Buffer.compare(got, want.data)).toBe(0);
          expect(() => tensor.data).toThrowError(
            expect.objectContaining({ code: "ENGINE_NO_TENSOR_DATA" }),
          );
        }
        const logits = await logitsOf(await new ReferenceBackend().compile(description));
        expectSameLogits(logits, referenceLogits);
      } finally {
        await source.close?.();
      }
    },
  );

  it("reads the whole source into memory when asked, so tensor.data works", async () => {
    const description = await readModelDescriptionFrom(blobSource(new Blob([bytes])), {
      tensorData: true,
    });
    const name = "output_norm.weight";
    const tensor = description.tensors.get(name)!;
    expect(Buffer.compare(tensor.data, reference.tensors.get(name)!.data)).toBe(0);
    expectSameView(await tensor.read(), tensor.data);
  });
});

describe("BoundTensor.read", () => {
  it("resolves the in-memory view for a description read with its data", async () => {
    const tensor = reference.tensors.get("token_embd.weight")!;
    expectSameView(await tensor.read(), tensor.data);
  });

  it("reads a header-only description's tensors by reopening the file, reporting progress", {
    timeout: 120_000,
  }, async () => {
    const header = await readModelDescription(file, { tensorData: false });
    expect(header.path).toBe(file);
    const events: LoadProgress[] = [];
    const model = await new ReferenceBackend().compile(header, {
      onProgress: (p) => events.push(p),
    });
    expectSameLogits(await logitsOf(model), referenceLogits);
    expect(events.map((e) => e.done)).toEqual(events.map((_, i) => i + 1));
    expect(events.at(-1)).toMatchObject({ phase: "read", done: events[0]!.total });
  });
});
