/**
 * The native backend end to end: bit-exact agreement with the reference backend where the
 * arithmetic is the same, invariance to the thread count and to mmap, the head variants, what
 * ran, and its failure modes. The backend contract per kernel path is contract.test.ts, the
 * pinned golden tokens golden.test.ts.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { readModelDescription } from "@bitnet-ts/engine-core";
import { logitsBatched, logitsOneByOne, sameBits } from "@bitnet-ts/engine-core/testing";
import { afterAll, describe, expect, it } from "vitest";
import {
  argmax,
  cleanup,
  cpuModel,
  fixture,
  LONG_PROMPT,
  referenceLogits,
  SLOW_TEST_MS,
  tmp,
  withEmbedding,
} from "../test/models";
import { cosine } from "../test/numbers";
import { ALL_KERNEL_PATHS, pathSkipReason, pathTitle } from "../test/paths";
import { CpuBackend } from "./backend";

afterAll(cleanup);

describe("agreement with the reference backend", () => {
  it.each(["tiny-i2s", "tiny-tq2", "tiny-tq1"])(
    "%s: the scalar path reproduces the reference logits bit for bit",
    { timeout: SLOW_TEST_MS },
    async (name) => {
      const native = await cpuModel(name, { kernelPath: "scalar", threads: 2 });
      expect(
        sameBits(
          await logitsBatched(native, LONG_PROMPT),
          await referenceLogits(await fixture(name), LONG_PROMPT),
        ),
      ).toBe(true);
      await native.dispose();
    },
  );

  it("decoding 150 tokens one by one (the key cache grown twice, five key blocks, a context that is not whole blocks) reproduces the reference bit for bit", {
    timeout: SLOW_TEST_MS,
  }, async () => {
    // tiny-spm: the tiny shape (8 query heads sharing 2 KV heads) with a 32000-token vocabulary,
    // whose head keeps the reference's 150 steps short.
    const contextLength = 150;
    const tokens = Array.from({ length: contextLength }, (_, i) => (1 + i * 7919) % 32000);
    const native = await cpuModel("tiny-spm", { kernelPath: "scalar", threads: 2 }, contextLength);
    // Prefill then decode too: the batch's keys land in the cache that single steps then grow.
    const seq = native.createSequence();
    const { runs } = await native.step([
      { sequence: seq, tokens: tokens.slice(0, 20), logits: "all" },
    ]);
    const vocab = native.description.hparams.vocabSize;
    const got = new Float32Array(contextLength * vocab);
    got.set(runs[0]!.logits);
    for (let i = 20; i < contextLength; i++) {
      const step = await native.step([{ sequence: seq, tokens: [tokens[i]!] }]);
      got.set(step.runs[0]!.logits, i * vocab);
    }
    const want = await referenceLogits(await fixture("tiny-spm"), tokens, {
      contextLength,
      oneByOne: true,
    });
    expect(sameBits(got, want)).toBe(true);
    expect(sameBits(await logitsOneByOne(native, tokens), got)).toBe(true);
    await native.dispose();
  });

  it.each(["F32", "BF16"] as const)(
    "an %s output head reproduces the reference logits bit for bit",
    { timeout: SLOW_TEST_MS },
    async (type) => {
      const file = await withEmbedding("tiny-tq2", type);
      const native = await new CpuBackend({ threads: 2 }).compile(
        await readModelDescription(file, { tensorData: false }),
        { contextLength: 64 },
      );
      expect(
        sameBits(
          await logitsBatched(native, LONG_PROMPT),
          await referenceLogits(file, LONG_PROMPT),
        ),
      ).toBe(true);
      expect([...native.kernelCounts().keys()]).toContain(
        `cpu.${native.info().kernelPath === "amx" ? "avx512vnni" : native.info().kernelPath}.output.${type.toLowerCase()}`,
      );
      await native.dispose();
    },
  );

  it.each([
    ["Q8_0", "Q8_0 × Q8_0", "q8_0"],
    ["Q6_K", "Q6_K × Q8_K", "q6_k.q8_k"],
  ] as const)(
    "a %s head takes llama.cpp's %s dot: same top-1, cosine ≥ 0.9999 to the reference's float dot",
    {
      timeout: SLOW_TEST_MS,
    },
    async (type, _dot, kernel) => {
      const file = await withEmbedding("tiny-tq2", type);
      const native = await new CpuBackend({ threads: 2 }).compile(
        await readModelDescription(file, { tensorData: false }),
        { contextLength: 64 },
      );
      const a = await logitsBatched(native, LONG_PROMPT);
      const b = await referenceLogits(file, LONG_PROMPT);
      const vocab = native.description.hparams.vocabSize;
      for (let t = 0; t < LONG_PROMPT.length; t++) {
        const ra = a.subarray(t * vocab, (t + 1) * vocab);
        const rb = b.subarray(t * vocab, (t + 1) * vocab);
        expect(argmax(ra)).toBe(argmax(rb));
        expect(cosine(ra, rb)).toBeGreaterThanOrEqual(0.9999);
      }
      // The integer kernel ran, not the reference's float dot (src/head-q6k.test.ts holds the
      // Q6_K × Q8_K kernel to the TypeScript dot bit for bit).
      const path = native.info().kernelPath === "amx" ? "avx512vnni" : native.info().kernelPath;
      expect([...native.kernelCounts().keys()]).toContain(`cpu.${path}.output.${kernel}`);
      await native.dispose();
    },
  );
});

describe("invariance", () => {
  it.each(["tiny-i2s", "tiny-tq2"])(
    "%s: logits are identical whatever the thread count (1, 2, 3, 5)",
    { timeout: SLOW_TEST_MS },
    async (name) => {
      const results: Float32Array[] = [];
      for (const threads of [1, 2, 3, 5]) {
        const model = await cpuModel(name, { threads });
        expect(model.info().threads).toBe(threads);
        results.push(await logitsBatched(model, LONG_PROMPT));
        results.push(await logitsOneByOne(model, LONG_PROMPT.slice(0, 4)));
        await model.dispose();
      }
      for (let i = 2; i < results.length; i++) {
        expect(sameBits(results[i]!, results[i % 2]!), `run ${i}`).toBe(true);
      }
    },
  );

  it("reading the weights into memory (--no-mmap) gives the same logits as mapping the file", {
    timeout: SLOW_TEST_MS,
  }, async () => {
    const mapped = await cpuModel("tiny-i2s", { threads: 2, mmap: true });
    const loaded = await cpuModel("tiny-i2s", { threads: 2, mmap: false });
    expect(mapped.info().mappedBytes).toBeGreaterThan(0);
    expect(mapped.info().hugeMappedBytes).toBeGreaterThanOrEqual(0);
    expect(mapped.info().hugeMappedBytes).toBeLessThanOrEqual(mapped.info().mappedBytes);
    expect(mapped.info().loadedBytes).toBe(0);
    expect(loaded.info().mappedBytes).toBe(0);
    expect(loaded.info().loadedBytes).toBeGreaterThan(0);
    expect(
      sameBits(await logitsBatched(mapped, LONG_PROMPT), await logitsBatched(loaded, LONG_PROMPT)),
    ).toBe(true);
    await mapped.dispose();
    await loaded.dispose();
  });
});

describe("the Q8_0 head option", () => {
  it("requantizes the F16 head at load: same top-1 on the prompt, cosine ≥ 0.999, reported as a Q8_0 kernel", {
    timeout: SLOW_TEST_MS,
  }, async () => {
    const f16 = await cpuModel("tiny-i2s", { threads: 2 });
    const q8 = await cpuModel("tiny-i2s", { threads: 2, headQ8_0: true });
    expect(q8.info().repackedBytes).toBeGreaterThan(0);
    const a = await logitsBatched(f16, LONG_PROMPT);
    const b = await logitsBatched(q8, LONG_PROMPT);
    const vocab = f16.description.hparams.vocabSize;
    for (let t = 0; t < LONG_PROMPT.length; t++) {
      const ra = a.subarray(t * vocab, (t + 1) * vocab);
      const rb = b.subarray(t * vocab, (t + 1) * vocab);
      expect(argmax(rb)).toBe(argmax(ra));
      expect(cosine(ra, rb)).toBeGreaterThanOrEqual(0.999);
    }
    expect([...q8.kernelCounts().keys()].some((k) => k.endsWith(".output.q8_0"))).toBe(true);
    expect([...f16.kernelCounts().keys()].some((k) => k.endsWith(".output.f16"))).toBe(true);
    await f16.dispose();
    await q8.dispose();
  });
});

describe("what ran", () => {
  for (const kernelPath of ALL_KERNEL_PATHS) {
    it.skipIf(pathSkipReason(kernelPath) !== undefined)(
      `reports the kernels it executed on the ${pathTitle(kernelPath)} path, with call counts`,
      { timeout: SLOW_TEST_MS },
      async () => {
        const model = await cpuModel("tiny-i2s", { kernelPath, threads: 2 });
        expect(model.info().kernelPath).toBe(kernelPath);
        const seq = model.createSequence();
        await model.step([{ sequence: seq, tokens: LONG_PROMPT }]);
        await model.step([{ sequence: seq, tokens: [1234] }]);
        const counts = model.kernelCounts();
        const vector = kernelPath === "amx" ? "avx512vnni" : kernelPath;
        const layers = model.description.hparams.nLayer;
        // 7 ternary projections per layer; the prompt's step uses AMX tiles when the path has them.
        expect(counts.get(`cpu.${kernelPath === "amx" ? "amx" : vector}.linear.i2_s.i8`)).toBe(
          kernelPath === "amx" ? 7 * layers : 14 * layers,
        );
        if (kernelPath === "amx") {
          expect(counts.get("cpu.avx512vnni.linear.i2_s.i8")).toBe(7 * layers);
        }
        expect(counts.get(`cpu.${vector}.output.f16`)).toBe(2);
        expect(counts.get(`cpu.${vector}.attention.gqa.f16kv`)).toBe(2 * layers);
        await model.dispose();
      },
    );
  }

  for (const kernelPath of ALL_KERNEL_PATHS) {
    it.skipIf(pathSkipReason(kernelPath) !== undefined)(
      `shares the rows of projections of one input as one group on the ${pathTitle(kernelPath)} path, with the logits of separate ops`,
      { timeout: SLOW_TEST_MS },
      async () => {
        for (const name of ["tiny-i2s", "tiny-tq2", "tiny-tq1"]) {
          const model = await cpuModel(name, { kernelPath, threads: 2 });
          // A capture puts a barrier after every op, so q/k/v and gate/up run one by one.
          const run = async (separate: boolean): Promise<Float32Array[]> => {
            const seq = model.createSequence();
            const capture = separate ? { buffers: ["attn_norm-0"] } : undefined;
            const rows: Float32Array[] = [];
            const prompt = await model.step(
              [{ sequence: seq, tokens: LONG_PROMPT.slice(0, 5), logits: "all" }],
              capture,
            );
            rows.push(Float32Array.from(prompt.runs[0]!.logits));
            for (const token of [1234, 99, 7]) {
              const out = await model.step([{ sequence: seq, tokens: [token] }], capture);
              rows.push(Float32Array.from(out.runs[0]!.logits));
            }
            model.freeSequence(seq);
            return rows;
          };
          const grouped = await run(false);
          const separate = await run(true);
          for (const [i, row] of grouped.entries()) {
            expect(sameBits(row, separate[i]!), `${name}, step ${i}`).toBe(true);
          }
          await model.dispose();
        }
      },
    );
  }

  it("names the repacked TQ1_0 kernels honestly", { timeout: SLOW_TEST_MS }, async () => {
    const model = await cpuModel("tiny-tq1", { threads: 2 });
    expect(model.info().repackedBytes).toBeGreaterThan(0);
    await logitsBatched(model, [128000, 791]);
    expect(
      [...model.kernelCounts().keys()].some((k) => k.endsWith(".linear.tq1_0_as_tq2_0.q8_k")),
    ).toBe(true);
    await model.dispose();
  });
});

describe("runtime behaviour", () => {
  it("never blocks the event loop during a step", { timeout: SLOW_TEST_MS }, async () => {
    const model = await cpuModel("tiny-i2s", { kernelPath: "scalar", threads: 1 });
    const seq = model.createSequence();
    const tokens = Array.from({ length: 60 }, (_, i) => LONG_PROMPT[i % LONG_PROMPT.length]!);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const started = performance.now();
    await model.step([{ sequence: seq, tokens }]);
    const elapsed = performance.now() - started;
    clearInterval(timer);
    // A step of tens of milliseconds runs on the addon's threads while timers keep firing.
    expect(elapsed).toBeGreaterThan(10);
    expect(ticks).toBeGreaterThanOrEqual(2);
    await model.dispose();
  });

  it("serializes overlapping steps and defers sequence changes made while one runs", {
    timeout: SLOW_TEST_MS,
  }, async () => {
    const model = await cpuModel("tiny-tq2", { threads: 2 });
    const expected = await logitsBatched(model, LONG_PROMPT);
    const a = model.createSequence();
    const b = model.createSequence();
    const first = model.step([{ sequence: a, tokens: LONG_PROMPT, logits: "all" }]);
    const second = model.step([{ sequence: b, tokens: LONG_PROMPT, logits: "all" }]);
    const doomed = model.createSequence();
    model.freeSequence(doomed); // while the first step is in flight
    const [ra, rb] = await Promise.all([first, second]);
    expect(sameBits(Float32Array.from(ra.runs[0]!.logits), expected)).toBe(true);
    expect(sameBits(Float32Array.from(rb.runs[0]!.logits), expected)).toBe(true);
    expect(model.sequenceCount).toBe(2);
    const disposing = model.dispose();
    await disposing;
  });

  it("hands transient runs a per-sequence buffer and every other run an array of its own", {
    timeout: SLOW_TEST_MS,
  }, async () => {
    const model = await cpuModel("tiny-i2s", { threads: 2 });
    const prompt = LONG_PROMPT.slice(0, 8);
    const expected = await logitsOneByOne(model, prompt); // fresh arrays, one row per token
    const vocab = model.description.hparams.vocabSize;
    const row = (i: number) => expected.subarray(i * vocab, (i + 1) * vocab);
    const a = model.createSequence();
    const b = model.createSequence();
    const kept: Float32Array[] = [];
    let previous: Float32Array | undefined;
    for (const [i, token] of prompt.entries()) {
      const out = await model.step([{ sequence: a, tokens: [token], transient: true }]);
      const transient = out.runs[0]!.logits;
      expect(sameBits(Float32Array.from(transient), row(i))).toBe(true);
      if (previous !== undefined) {
        expect(transient.buffer).toBe(previous.buffer); // reused across the sequence's steps
      }
      previous = transient;
      kept.push((await model.step([{ sequence: b, tokens: [token] }])).runs[0]!.logits);
    }
    // The non-transient arrays were never overwritten by later steps.
    for (const [i, logits] of kept.entries()) {
      expect(sameBits(logits, row(i))).toBe(true);
    }
    // Another sequence's transient step leaves this one's array alone.
    const d = model.createSequence();
    await model.step([{ sequence: d, tokens: [prompt[0]!], transient: true }]);
    expect(sameBits(Float32Array.from(previous!), row(prompt.length - 1))).toBe(true);
    // A reduction reuses the step buffer too: its argmax is still right.
    const c = model.createSequence();
    const reduced = await model.step([{ sequence: c, tokens: prompt, reduce: "argmax" }]);
    expect(reduced.runs[0]!.argmax![0]).toBe(argmax(row(prompt.length - 1)));
    await model.dispose();
  });

  it("rejects a kernel path this CPU cannot run, with the ones it can", async () => {
    const description = await readModelDescription(await fixture("tiny-i2s"), {
      tensorData: false,
    });
    await expect(new CpuBackend({ kernelPath: "sve2" }).compile(description)).rejects.toMatchObject(
      {
        code: "ENGINE_BACKEND_UNAVAILABLE",
        message: expect.stringContaining("scalar"),
      },
    );
  });

  it("rejects bad captures and injections with typed errors", async () => {
    const model = await cpuModel("tiny-i2s", { threads: 2 });
    const seq = model.createSequence();
    await expect(
      model.step([{ sequence: seq, tokens: [1] }], { buffers: ["no-such-buffer"] }),
    ).rejects.toMatchObject({ code: "ENGINE_BAD_OPTION" });
    await expect(
      model.stepWithInputs(
        [{ sequence: seq, tokens: [1, 2] }],
        new Map([["attn_norm-0", new Float32Array(3)]]),
        { buffers: [] },
      ),
    ).rejects.toMatchObject({
      code: "ENGINE_BAD_OPTION",
      message: expect.stringContaining("needs 512 values"),
    });
    expect(model.sequenceLength(seq)).toBe(0);
    await model.dispose();
  });

  it("injected inputs really replace the op's input", async () => {
    const model = await cpuModel("tiny-i2s", { threads: 2 });
    const seq = model.createSequence();
    const width = model.description.graph.buffers["attn_norm-0"]!;
    const { captured } = await model.stepWithInputs(
      [{ sequence: seq, tokens: [128000, 791] }],
      new Map([["attn_norm-0", new Float32Array(2 * width)]]),
      {
        buffers: ["Qcur-0", "attn_norm-0"],
      },
    );
    expect(captured!.get("Qcur-0")!.every((v) => v === 0)).toBe(true);
    await model.dispose();
  });

  it("refuses a file that was truncated after its header was read, without crashing", async () => {
    const file = path.join(tmp, "truncated.gguf");
    fs.copyFileSync(await fixture("tiny-i2s"), file);
    const description = await readModelDescription(file, { tensorData: false });
    fs.truncateSync(file, fs.statSync(file).size - 4096);
    await expect(new CpuBackend().compile(description)).rejects.toMatchObject({
      code: "ENGINE_BACKEND_UNAVAILABLE",
    });
  });
});
