/**
 * Property and fuzz tests: random valid files round-trip exactly, and random mutations or
 * truncations of valid files only ever produce a GgufError (never another exception or a hang).
 * CI runs a few thousand cases; set BITNET_FUZZ_RUNS for long runs.
 */
import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { plain } from "../test/plain";
import { GgufError } from "./errors";
import { findGgmlTypeByName, tensorByteSize } from "./ggml-types";
import { type GgufArrayValue, type GgufValue, GgufValueType, gguf } from "./metadata";
import { parseGguf } from "./reader";
import { GgufWriter } from "./writer";

const RUNS = Number(process.env.BITNET_FUZZ_RUNS ?? 1000);

const text = fc.string({ unit: "grapheme", maxLength: 12 });
const f32 = fc.float({ noDefaultInfinity: false }).map(Math.fround);

const scalar: fc.Arbitrary<GgufValue> = fc.oneof(
  fc.integer({ min: 0, max: 255 }).map(gguf.uint8),
  fc.integer({ min: -128, max: 127 }).map(gguf.int8),
  fc.integer({ min: 0, max: 65535 }).map(gguf.uint16),
  fc.integer({ min: -32768, max: 32767 }).map(gguf.int16),
  fc.integer({ min: 0, max: 0xffffffff }).map(gguf.uint32),
  fc.integer({ min: -0x80000000, max: 0x7fffffff }).map(gguf.int32),
  f32.map(gguf.float32),
  fc.double().map(gguf.float64),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(gguf.uint64),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(gguf.int64),
  fc.boolean().map(gguf.bool),
  text.map(gguf.string),
);

const flatArray: fc.Arbitrary<GgufArrayValue> = fc.oneof(
  fc.array(text, { maxLength: 6 }).map(gguf.stringArray),
  fc.array(f32, { maxLength: 6 }).map((v) => gguf.float32Array(Float32Array.from(v))),
  fc
    .array(fc.integer({ min: -0x80000000, max: 0x7fffffff }), { maxLength: 6 })
    .map((v) => gguf.int32Array(v)),
  fc.array(fc.boolean(), { maxLength: 6 }).map((v) => gguf.array(GgufValueType.BOOL, v)),
  fc
    .array(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { maxLength: 4 })
    .map((v) => gguf.array(GgufValueType.UINT64, BigUint64Array.from(v))),
  fc.uint8Array({ maxLength: 8 }).map((v) => gguf.array(GgufValueType.UINT8, v)),
);

const value: fc.Arbitrary<GgufValue> = fc.oneof(
  { weight: 4, arbitrary: scalar },
  { weight: 2, arbitrary: flatArray },
  {
    weight: 1,
    arbitrary: fc.array(flatArray, { maxLength: 3 }).map((v) => gguf.array(GgufValueType.ARRAY, v)),
  },
);

const TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "TQ2_0", "TQ1_0", "I2_S"] as const;

const tensor = fc
  .record({
    type: fc.constantFrom(...TYPES),
    blocks: fc.integer({ min: 1, max: 3 }),
    rest: fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
  })
  .chain(({ type, blocks, rest }) => {
    const info = findGgmlTypeByName(type)!;
    const shape = [blocks * info.blockSize, ...rest];
    return fc
      .uint8Array({
        minLength: tensorByteSize(info, shape),
        maxLength: tensorByteSize(info, shape),
      })
      .map((data) => ({ type, shape, data }));
  });

const model = fc.record({
  metadata: fc.uniqueArray(fc.tuple(fc.stringMatching(/^[a-z][a-z0-9_.]{0,15}$/), value), {
    selector: ([key]) => key,
    maxLength: 8,
  }),
  tensors: fc.uniqueArray(fc.tuple(fc.stringMatching(/^[a-z][a-z0-9_.]{0,20}$/), tensor), {
    selector: ([name]) => name,
    maxLength: 4,
  }),
  alignment: fc.constantFrom(1, 8, 32, 64),
});

type Model = typeof model extends fc.Arbitrary<infer T> ? T : never;

async function build(m: Model): Promise<Uint8Array> {
  const w = new GgufWriter({ alignment: m.alignment });
  for (const [key, v] of m.metadata) {
    if (key !== "general.alignment") {
      w.set(key, v);
    }
  }
  for (const [name, t] of m.tensors) {
    w.addTensor(name, t.type, t.shape, t.data);
  }
  return w.toBytes();
}

function parseOrGgufError(bytes: Uint8Array): void {
  try {
    parseGguf(bytes);
  } catch (error) {
    if (!(error instanceof GgufError)) {
      throw new Error(`non-GgufError thrown: ${String(error)}`, { cause: error });
    }
  }
}

// Long runs (BITNET_FUZZ_RUNS=200000) take minutes; scale the timeout with the run count.
describe("GGUF fuzzing", { timeout: 30_000 + RUNS * 2 }, () => {
  it("round-trips random valid files exactly", async () => {
    await fc.assert(
      fc.asyncProperty(model, async (m) => {
        const bytes = await build(m);
        const file = parseGguf(bytes);
        const expected = m.metadata.filter(([k]) => k !== "general.alignment");
        const got = [...file.metadata]
          .filter(([k]) => k !== "general.alignment")
          .map(([k, v]) => [k, plain(v)]);
        expect(got).toEqual(expected);
        expect(file.alignment).toBe(m.alignment);
        expect(file.tensors.map((t) => [t.name, t.type.name, t.shape])).toEqual(
          m.tensors.map(([name, t]) => [name, t.type, t.shape]),
        );
        for (const [name, t] of m.tensors) {
          expect(file.tensorData(name)).toEqual(t.data);
        }
        // Writing what we read gives the same bytes.
        const again = new GgufWriter({ alignment: file.alignment }).setAll(file.metadata);
        for (const t of file.tensors) {
          again.addTensor(t.name, t.type, t.shape, file.tensorData(t));
        }
        expect(await again.toBytes()).toEqual(bytes);
      }),
      { numRuns: Math.max(100, RUNS / 4) },
    );
  });

  it("mutated files only ever produce GgufError", async () => {
    const mutation = fc.array(
      fc.record({
        at: fc.double({ min: 0, max: 1, noNaN: true }),
        byte: fc.integer({ min: 0, max: 255 }),
        header: fc.boolean(),
      }),
      { minLength: 1, maxLength: 8 },
    );
    await fc.assert(
      fc.asyncProperty(model, mutation, async (m, edits) => {
        const bytes = await build(m);
        // Half the edits land in the header region, where a flipped byte changes structure.
        const limit = Math.min(bytes.length, parseGguf(bytes).dataOffset);
        for (const { at, byte, header } of edits) {
          const i = Math.floor(at * (header ? limit : bytes.length));
          bytes[Math.min(i, bytes.length - 1)] = byte;
        }
        parseOrGgufError(bytes);
      }),
      { numRuns: RUNS },
    );
  });

  it("truncated files only ever produce GgufError", async () => {
    await fc.assert(
      fc.asyncProperty(model, fc.double({ min: 0, max: 1, noNaN: true }), async (m, at) => {
        const bytes = await build(m);
        parseOrGgufError(bytes.subarray(0, Math.floor(at * bytes.length)));
      }),
      { numRuns: RUNS },
    );
  });

  it("random bytes behind a valid magic only ever produce GgufError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), fc.constantFrom(2, 3), (tail, version) => {
        const bytes = new Uint8Array(8 + tail.length);
        bytes.set([0x47, 0x47, 0x55, 0x46, version, 0, 0, 0]);
        bytes.set(tail, 8);
        parseOrGgufError(bytes);
      }),
      { numRuns: RUNS },
    );
  });
});
