/**
 * Bad input to the native model (specs, weights, steps) gets an error with a message, never a
 * crash: fuzzed through the host twins, which share every check with the GPU executor.
 */
import { createRequire } from "node:module";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { NO_ADDON, titled } from "../test/models";
import { addonFiles } from "./loader";

type NativeModelClass = new (
  spec: unknown,
  where: string,
) => {
  setWeight(...args: unknown[]): void;
  finish(): void;
  createSequence(id: number): void;
  step(...args: unknown[]): Promise<void>;
  dispose(): void;
};

const addon = (): { NativeCudaModel: NativeModelClass } =>
  createRequire(import.meta.url)(addonFiles().addon) as { NativeCudaModel: NativeModelClass };

const SPEC = {
  nEmbd: 128,
  nLayer: 1,
  nHead: 2,
  nHeadKv: 1,
  headDim: 64,
  nRot: 64,
  vocabSize: 16,
  contextLength: 8,
  maxBatch: 4,
  ropeFreqBase: 10000,
  rmsEps: 1e-5,
  device: 0,
  weightCount: 1,
  ops: [
    {
      kind: 0,
      in0: -1,
      in1: -1,
      in2: -1,
      out: 0,
      weight: 0,
      scale: -1,
      heads: 0,
      layer: 0,
      act: 0,
    },
  ],
  bufferWidths: [128],
};

describe("the native model rejects bad input with an error", () => {
  it.skipIf(NO_ADDON !== false)(
    titled("random specs: an Error or a model, never a crash", NO_ADDON),
    () => {
      const { NativeCudaModel } = addon();
      const value = fc.oneof(
        fc.integer({ min: -3, max: 300 }),
        fc.double(),
        fc.string(),
        fc.constant(undefined),
        fc.constant(null),
        fc.array(fc.integer({ min: -2, max: 10 }), { maxLength: 3 }),
      );
      fc.assert(
        fc.property(fc.dictionary(fc.constantFrom(...Object.keys(SPEC)), value), (overrides) => {
          try {
            const m = new NativeCudaModel({ ...SPEC, ...overrides }, "host");
            m.dispose();
          } catch (error) {
            expect(error).toBeInstanceOf(Error);
            expect((error as Error).message.length).toBeGreaterThan(0);
          }
        }),
        { numRuns: Number(process.env["BITNET_FUZZ_RUNS"] ?? 300) },
      );
    },
  );

  it.skipIf(NO_ADDON !== false)(
    titled("weights of the wrong size or shape, and ops without their weights", NO_ADDON),
    () => {
      const { NativeCudaModel } = addon();
      const m = new NativeCudaModel(SPEC, "host");
      expect(() => m.setWeight(0, 0, 4, 100, new Uint8Array(100), null, 1)).toThrow(
        /bytes, expected|whole blocks/,
      );
      expect(() => m.setWeight(0, 2, 16, 128, new Uint8Array(10), null, 1)).toThrow(
        /has 10 bytes, expected 4096/,
      );
      expect(() => m.setWeight(5, 2, 16, 128, new Uint8Array(4096), null, 1)).toThrow(
        /out of range/,
      );
      expect(() => m.setWeight(0, 9, 16, 128, new Uint8Array(4096), null, 1)).toThrow(
        /unknown weight kind/,
      );
      expect(() => m.finish()).toThrow(/not uploaded/);
      m.dispose();
    },
  );

  it.skipIf(NO_ADDON !== false)(
    titled("steps with unknown sequences, tokens or positions", NO_ADDON),
    async () => {
      const { NativeCudaModel } = addon();
      const m = new NativeCudaModel(SPEC, "host");
      m.setWeight(0, 2, 16, 128, new Uint8Array(4096), null, 1);
      m.finish();
      expect(() => m.finish()).toThrow(/finish\(\) was already called/);
      m.createSequence(1);
      const step = (
        tokens: number[],
        seqs: number[],
        positions: number[],
        want = new Uint8Array(tokens.length),
        logits = new Float32Array(0),
        rowK: unknown = new Int32Array(0),
        top: unknown = new Int32Array(0),
      ) =>
        m.step(
          Int32Array.from(tokens),
          Int32Array.from(seqs),
          Int32Array.from(positions),
          want,
          logits,
          new Int32Array(0),
          [],
          new Int32Array(0),
          [],
          rowK,
          top,
        );
      await expect(step([1], [2], [0])).rejects.toThrow(/sequence 2 does not exist/);
      await expect(step([99], [1], [0])).rejects.toThrow(/token 99 is not in the vocabulary/);
      await expect(step([1], [1], [8])).rejects.toThrow(/outside the context of 8/);
      await expect(step([1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 2, 3, 4])).rejects.toThrow(
        /1 to 4 tokens/,
      );
      expect(() =>
        m.step(
          Int32Array.of(1),
          Int32Array.of(1, 1),
          Int32Array.of(0),
          new Uint8Array(1),
          new Float32Array(0),
          new Int32Array(0),
          [],
          new Int32Array(0),
          [],
          new Int32Array(0),
          new Int32Array(0),
        ),
      ).toThrow(/one entry per token/);
      // The top-k arguments: one k per logit row, within what the GPU selects, room for each row.
      const one = Uint8Array.of(1);
      const room = new Int32Array(2 * 256);
      expect(() => step([1], [1], [0], one, new Float32Array(0), [1], room)).toThrow(
        /rowK must be an Int32Array/,
      );
      expect(() =>
        step([1], [1], [0], one, new Float32Array(0), Int32Array.of(1, 1), room),
      ).toThrow(/one entry per logit row/);
      expect(() => step([1], [1], [0], one, new Float32Array(0), Int32Array.of(17), room)).toThrow(
        /rowK entries must be from 0 to 16/,
      );
      expect(() =>
        step([1], [1], [0], one, new Float32Array(0), Int32Array.of(1), new Int32Array(8)),
      ).toThrow(/top is too short/);
      expect(() => step([1], [1], [0], one, new Float32Array(0), Int32Array.of(0), room)).toThrow(
        /logits is too short/,
      );
      // Captured and injected buffers: T × the buffer's width values each, of a buffer that exists.
      const buffers = (ids: number[], arrays: unknown[], inject: boolean) =>
        m.step(
          Int32Array.of(1, 1),
          Int32Array.of(1, 1),
          Int32Array.of(0, 1),
          new Uint8Array(2),
          new Float32Array(0),
          inject ? new Int32Array(0) : Int32Array.from(ids),
          inject ? [] : arrays,
          inject ? Int32Array.from(ids) : new Int32Array(0),
          inject ? arrays : [],
          new Int32Array(0),
          new Int32Array(0),
        );
      for (const inject of [false, true]) {
        const what = inject ? "injectData" : "captureOut";
        expect(() => buffers([0], [new Float32Array(128)], inject)).toThrow(
          new RegExp(`${what} for buffer 0 holds 128 values, not 256`),
        );
        expect(() => buffers([3], [new Float32Array(256)], inject)).toThrow(
          /names buffer 3, which does not exist/,
        );
        expect(() => buffers([0], [], inject)).toThrow(
          new RegExp(`${what} needs a Float32Array for buffer 0`),
        );
        expect(() => buffers([0], [new Int32Array(256)], inject)).toThrow(/needs a Float32Array/);
      }
      await buffers([0], [new Float32Array(256)], false);
      await step([1], [1], [0]);
      m.dispose();
      expect(() => m.finish()).toThrow(/disposed/);
    },
  );
});
