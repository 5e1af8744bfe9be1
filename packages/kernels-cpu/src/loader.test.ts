import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { isBitnetError } from "@bitnet-ts/errors";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { readGgufFileSync } from "@bitnet-ts/gguf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { failureRecord, firstErrorLine } from "../scripts/build-failure.mjs";
import { expectedKernelPath } from "./backend";
import {
  type NativeModel,
  type NativeModelConfig,
  NativeOpKind,
  type NativeOpSpec,
} from "./binding";
import {
  ABI_VERSION,
  BUILD_FAILURE_FILE,
  bindingCandidates,
  KernelUnavailableError,
  loadBinding,
  loadBindingFrom,
  nativeBuildFailure,
} from "./loader";

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

describe("loading the addon", () => {
  it("finds the build and reports the kernel paths this CPU runs", () => {
    const binding = loadBinding();
    expect(binding.abiVersion).toBe(ABI_VERSION);
    const paths = binding.availablePaths();
    expect(paths[0]).toBe("scalar");
    expect(binding).not.toHaveProperty("NativeModel"); // loadModel is the way in
    // This build succeeded, so it left no failure record.
    expect(nativeBuildFailure()).toBeUndefined();
    expect(BUILD_FAILURE_FILE).toBe(path.join(packageRoot, "build", "native-build-failure.json"));
    // What device-probe expects must be what the addon's own cpuid check offers.
    expect(paths).toContain(expectedKernelPath());
  });

  it("searches an explicit path first, then build/Release (a local compile), then the prebuild", () => {
    const candidates = bindingCandidates("/explicit/addon.node");
    expect(candidates.map(([label]) => label)).toEqual([
      "explicit path",
      "build/Release",
      "prebuild",
    ]);
    expect(candidates[0]![1]).toBe("/explicit/addon.node");
    expect(candidates[2]![1]).toContain(
      path.join("prebuilds", `${process.platform}-${process.arch}`),
    );
  });

  it("loads an explicit path given relative to the working directory", () => {
    const built = path.join(packageRoot, "build", "Release", "bitnet_kernels_cpu.node");
    const relative = path.relative(process.cwd(), built);
    expect(path.isAbsolute(relative)).toBe(false);
    expect(loadBindingFrom([["explicit path", relative]]).abiVersion).toBe(ABI_VERSION);
  });

  it("falls through a missing explicit path to the next candidate", () => {
    expect(loadBinding("/nonexistent/bitnet_kernels_cpu.node").abiVersion).toBe(ABI_VERSION);
  });

  it("fails with one typed error that lists every attempt and the fix", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "loader-"));
    const garbage = path.join(dir, "bitnet_kernels_cpu.node");
    fs.writeFileSync(garbage, "not a shared object");
    try {
      let caught: unknown;
      try {
        loadBindingFrom([
          ["explicit path", "/nonexistent/a.node"],
          ["prebuild", garbage],
          ["build/Release", undefined],
        ]);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(KernelUnavailableError);
      expect(isBitnetError(caught) && caught.code).toBe("KERNEL_UNAVAILABLE");
      const message = (caught as Error).message;
      expect(message).toContain("explicit path: /nonexistent/a.node (not found)");
      expect(message).toMatch(/prebuild: .*bitnet_kernels_cpu\.node \(.+\)/);
      expect(message).toContain("build:native");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a failed native build", () => {
  const compilerOutput = [
    "gyp info it worked if it ends with ok",
    "  CXX(target) Release/obj.target/bitnet_kernels_cpu/native/addon.o",
    "../native/addon.cc:337:53: error: no match for 'operator=' (operand types are 'Napi::Reference<Napi::Value>' and 'Napi::ObjectReference')",
    "  337 |         callback_error_ = Napi::Persistent(e.Value());",
    "../native/addon.cc:340:1: error: expected '}' at end of input",
    "make: *** [bitnet_kernels_cpu.target.mk:137: Release/obj.target/bitnet_kernels_cpu/native/addon.o] Error 1",
    "gyp ERR! build error",
    "gyp ERR! stack Error: `make` failed with exit code: 2",
    "gyp ERR! not ok",
  ].join("\n");

  function withRecord(record: unknown, test: (file: string) => void): void {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "build-failure-"));
    const file = path.join(dir, "native-build-failure.json");
    try {
      if (record !== undefined) {
        fs.writeFileSync(file, typeof record === "string" ? record : JSON.stringify(record));
      }
      test(file);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  function loadError(file: string): Error {
    try {
      loadBindingFrom([["build/Release", "/nonexistent/bitnet_kernels_cpu.node"]], {
        buildFailureFile: file,
      });
    } catch (error) {
      return error as Error;
    }
    throw new Error("the load did not fail");
  }

  it("singles out the first compiler error, else node-gyp's reason", () => {
    expect(firstErrorLine(compilerOutput.split("\n"))).toBe(
      "../native/addon.cc:337:53: error: no match for 'operator=' (operand types are 'Napi::Reference<Napi::Value>' and 'Napi::ObjectReference')",
    );
    expect(
      firstErrorLine([
        "gyp ERR! build error",
        "gyp ERR! stack Error: not found: make",
        "gyp ERR! not ok",
      ]),
    ).toBe("gyp ERR! stack Error: not found: make");
    const record = failureRecord({
      during: "install",
      command: "node node-gyp.js rebuild",
      exitCode: 1,
      output: `${Array.from({ length: 40 }, (_, i) => `line ${i}`).join("\n")}\n${compilerOutput}`,
      at: new Date("2025-01-02T03:04:05Z"),
    });
    expect(record.at).toBe("2025-01-02T03:04:05.000Z");
    expect(record.error).toContain("addon.cc:337:53: error: no match");
    expect(record.log.split("\n")).toHaveLength(30);
    expect(record.log.split("\n").at(-1)).toBe("gyp ERR! not ok");
  });

  it("starts the load error with what happened and the fix, and tells bitnet info", () => {
    const record = failureRecord({
      during: "install",
      command: "node ../../node_modules/node-gyp/bin/node-gyp.js rebuild --jobs=2",
      exitCode: 1,
      output: compilerOutput,
      at: new Date("2025-01-02T03:04:05Z"),
    });
    withRecord(record, (file) => {
      expect(nativeBuildFailure(file)).toEqual({
        at: "2025-01-02T03:04:05.000Z",
        error: record.error,
        log: record.log,
      });
      const error = loadError(file);
      expect(error).toBeInstanceOf(KernelUnavailableError);
      const lines = error.message.split("\n");
      expect(lines[0]).toBe(`the native CPU kernels failed to build at install: ${record.error}`);
      expect(lines[1]).toMatch(/^Fix: .*build:native/);
      expect(error.message).toContain(`Build record: ${file}`);
      expect(error.message).toContain("exit code 1");
      expect(error.message).toContain(
        "build/Release: /nonexistent/bitnet_kernels_cpu.node (not found)",
      );
    });
  });

  it("suggests the fix that matches the error", () => {
    const headers = failureRecord({
      during: "install",
      command: "find the Node.js headers (include/node/node_api.h)",
      exitCode: 1,
      output:
        "kernels-cpu: could not find the Node.js headers (include/node/node_api.h) next to node or in npm's nodedir.",
    });
    withRecord(headers, (file) => {
      const lines = loadError(file).message.split("\n");
      expect(lines[0]).toMatch(
        /^the native CPU kernels failed to build at install: kernels-cpu: could not find the Node\.js headers/,
      );
      expect(lines[1]).toMatch(/^Fix: install the Node\.js headers/);
    });
    withRecord(
      { ...headers, during: "build", error: "gyp ERR! stack Error: not found: make" },
      (file) => {
        const lines = loadError(file).message.split("\n");
        expect(lines[0]).toBe(
          "the native CPU kernels failed to build: gyp ERR! stack Error: not found: make",
        );
        expect(lines[1]).toMatch(/^Fix: install make/);
      },
    );
  });

  it("says nothing of a build without a readable record", () => {
    withRecord(undefined, (file) => {
      expect(nativeBuildFailure(file)).toBeUndefined();
      expect(loadError(file).message).toMatch(
        /^could not load the native CPU kernels - no usable addon\./,
      );
    });
    withRecord("{ not json", (file) => {
      expect(nativeBuildFailure(file)).toBeUndefined();
      expect(loadError(file).message).toMatch(/^could not load the native CPU kernels/);
    });
  });
});

describe("loadModel", () => {
  const binding = loadBinding();
  let dir: string;
  let tq1: string;
  let i2s: string;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "load-model-"));
    tq1 = path.join(dir, "tiny-tq1.gguf");
    i2s = path.join(dir, "tiny-i2s.gguf");
    await writeFixture(PRESETS["tiny-tq1"]!, tq1);
    await writeFixture(PRESETS["tiny-i2s"]!, i2s);
  }, 60_000);
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A small graph on a fixture's tensors: embed → RMS norm → tied output head. */
  function config(file: string, overrides: Partial<NativeModelConfig> = {}): NativeModelConfig {
    const gguf = readGgufFileSync(file);
    const tensors = gguf.tensors.map((t) => ({
      name: t.name,
      type: t.type.id,
      ne0: t.shape[0]!,
      ne1: t.shape[1] ?? 1,
      offset: t.fileOffset,
      bytes: t.byteSize,
    }));
    const index = (name: string): number => tensors.findIndex((t) => t.name === name);
    const embd = tensors[index("token_embd.weight")]!;
    const op = (kind: number, fields: Partial<NativeOpSpec>): NativeOpSpec => ({
      kind,
      in0: -1,
      in1: -1,
      in2: -1,
      out: -1,
      weight: -1,
      scale: -1,
      heads: 0,
      layer: 0,
      act: 0,
      ...fields,
    });
    return {
      path: file,
      nEmbd: embd.ne0,
      nLayer: 2,
      nFf: 768,
      nHead: 4,
      nHeadKv: 2,
      headDim: 64,
      nRot: 64,
      vocabSize: embd.ne1,
      contextLength: 128,
      ropeFreqBase: 500000,
      rmsEps: 1e-5,
      threads: 2,
      maxBatch: 8,
      kernelPath: "auto",
      head: "",
      tq1: "repack",
      mmap: true,
      tensors,
      ops: [
        op(NativeOpKind.embed, { out: 0, weight: index("token_embd.weight") }),
        op(NativeOpKind.rms_norm, { in0: 0, out: 1, weight: index("output_norm.weight") }),
        op(NativeOpKind.output, { in0: 1, out: 2, weight: index("token_embd.weight") }),
      ],
      bufferWidths: [embd.ne0, embd.ne0, embd.ne1],
      ...overrides,
    };
  }

  type Event = [phase: string, done: number, total: number];

  async function load(cfg: NativeModelConfig): Promise<{ model: NativeModel; events: Event[] }> {
    const events: Event[] = [];
    const model = await binding.loadModel(cfg, (phase, done, total) => {
      events.push([phase, done, total]);
    });
    return { model, events };
  }

  /** Phases in order of first report; each one's reports rise to its total. */
  function phases(events: readonly Event[]): string[] {
    const order: string[] = [];
    for (const [phase, done, total] of events) {
      if (order.at(-1) !== phase) {
        expect(order).not.toContain(phase);
        order.push(phase);
      }
      expect(done).toBeGreaterThanOrEqual(0);
      expect(done).toBeLessThanOrEqual(total);
    }
    for (const phase of order) {
      const mine = events.filter(([p]) => p === phase);
      const done = mine.map(([, d]) => d);
      expect(done).toEqual([...done].sort((a, b) => a - b));
      expect(new Set(done).size).toBe(done.length);
      expect(mine.at(-1)![1]).toBe(mine.at(-1)![2]);
    }
    return order;
  }

  it("builds the model off the JS thread and reports its progress in bytes", async () => {
    const cfg = config(tq1);
    const { model, events } = await load(cfg);
    try {
      expect(phases(events)).toEqual(["map", "prefault", "repack"]);
      expect(events.length).toBeLessThanOrEqual(40);
      const size = fs.statSync(tq1).size;
      expect(events.find(([p]) => p === "prefault")![2]).toBe(size);
      const repacked = cfg.tensors.filter((t) => t.type === 34).reduce((a, t) => a + t.bytes, 0);
      expect(events.find(([p]) => p === "repack")![2]).toBe(repacked);
      // Every report arrived before the promise resolved.
      const seen = events.length;
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(events.length).toBe(seen);
      expect(model.info().repackedBytes).toBeGreaterThan(0);
    } finally {
      model.dispose();
    }

    const read = await load(config(i2s, { mmap: false }));
    try {
      expect(phases(read.events)).toEqual(["read"]);
      expect(read.model.info().loadedBytes).toBeGreaterThan(0);
    } finally {
      read.model.dispose();
    }
    // Without a callback.
    (await binding.loadModel(config(i2s))).dispose();
  });

  it("reports the KV cache and scratch it holds", async () => {
    const { model } = await load(config(i2s));
    try {
      const info0 = model.info();
      expect(info0.kvBytesPerToken).toBe(2 * 2 * 2 * 64 * 2); // nLayer × K,V × nHeadKv × headDim × f16
      expect(info0.kvAllocatedBytes).toBe(0);
      expect(info0.scratchBytes).toBeGreaterThan(0);
      model.createSequence(0);
      const vocab = config(i2s).vocabSize;
      const logits = new Float32Array(vocab);
      await model.step(
        Int32Array.of(791),
        Int32Array.of(0),
        Int32Array.of(0),
        Uint8Array.of(1),
        logits,
        new Int32Array(0),
        [],
      );
      expect(logits.every(Number.isFinite)).toBe(true);
      const info1 = model.info();
      expect(info1.kvAllocatedBytes).toBe(32 * info0.kvBytesPerToken); // one key block: 32 positions
      expect(info1.scratchBytes).toBeGreaterThan(info0.scratchBytes); // activation buffers for the step
      model.forkSequence(0, 1);
      expect(model.info().kvAllocatedBytes).toBe(2 * 32 * info0.kvBytesPerToken);
      model.freeSequence(0);
      model.freeSequence(1);
      expect(model.info().kvAllocatedBytes).toBe(0);
      // Freed caches are kept for new sequences (up to one full-context sequence's bytes).
      expect(model.info().kvSpareBytes).toBe(2 * 32 * info0.kvBytesPerToken);
      const step = (seq: number, tokens: number[], out: Float32Array) =>
        model.step(
          Int32Array.from(tokens),
          new Int32Array(tokens.length).fill(seq),
          Int32Array.from(tokens, (_t, i) => i),
          new Uint8Array(tokens.length).fill(1),
          out,
          new Int32Array(0),
          [],
        );
      model.createSequence(2);
      await step(2, [5, 9, 300], new Float32Array(3 * vocab));
      expect(model.info().kvAllocatedBytes).toBe(32 * info0.kvBytesPerToken);
      expect(model.info().kvSpareBytes).toBe(32 * info0.kvBytesPerToken);
      model.freeSequence(2);
      // A sequence on a reused cache never sees what the last owner left behind its length.
      model.createSequence(3);
      const again = new Float32Array(vocab);
      await step(3, [791], again);
      expect(again).toEqual(logits);
      expect(model.info().kvAllocatedBytes).toBe(32 * info0.kvBytesPerToken);
      model.freeSequence(3);
    } finally {
      model.dispose();
    }
  });

  it("rejects with what failed and where", async () => {
    const good = config(tq1);
    const rejection = async (cfg: unknown, onProgress?: () => void): Promise<Error> => {
      try {
        (await binding.loadModel(cfg as NativeModelConfig, onProgress)).dispose();
      } catch (error) {
        return error as Error;
      }
      throw new Error("the load did not fail");
    };
    expect((await rejection({ ...good, path: path.join(dir, "missing.gguf") })).message).toBe(
      `could not open ${path.join(dir, "missing.gguf")}: No such file or directory`,
    );
    const outside = await rejection({
      ...good,
      tensors: good.tensors.map((t, i) => (i === 1 ? { ...t, offset: 1e12 } : t)),
    });
    expect(outside.message).toMatch(
      /^tensor output_norm\.weight \(f32, \d+×1\) is outside .*tiny-tq1\.gguf/,
    );
    const short = await rejection({
      ...good,
      tensors: good.tensors.map((t, i) => (i === 0 ? { ...t, bytes: t.bytes - 2 } : t)),
    });
    expect(short.message).toMatch(
      /^tensor token_embd\.weight \(f16, .*\) in .* has \d+ bytes; its shape needs \d+$/,
    );
    // A type the head cannot run, found after mapping and repacking (which the rejection frees).
    const q4 = await rejection({
      ...good,
      tensors: good.tensors.map((t, i) =>
        i === 0 ? { ...t, type: 2, bytes: (t.ne0 * t.ne1 * 18) / 32 } : t,
      ),
    });
    expect(q4.message).toBe(
      "embedding token_embd.weight: type q4_0 is not supported by the CPU backend",
    );
    const kernel = await rejection({ ...good, kernelPath: "no-such-path" });
    expect(kernel.message).toBe('kernel path "no-such-path" is not available on this CPU');
    const field = await rejection({ ...good, nEmbd: "256" });
    expect(field).toBeInstanceOf(TypeError);
    expect(field.message).toBe("config.nEmbd must be a number");
    const op = await rejection({ ...good, ops: [{ ...good.ops[0], weight: undefined }] });
    expect(op.message).toBe("config.ops[0].weight must be a number");
    const callback = await rejection(good, () => {
      throw new Error("the progress bar broke");
    });
    expect(callback.message).toBe("the progress bar broke");
    await expect(binding.loadModel(good, 42 as never)).rejects.toThrow(
      "onProgress must be a function",
    );
  });

  it("cannot be constructed directly", async () => {
    const model = await binding.loadModel(config(i2s));
    try {
      const Class = (model as unknown as { constructor: new (config: unknown) => unknown })
        .constructor;
      expect(() => new Class(config(i2s))).toThrow(/use binding\.loadModel/);
    } finally {
      model.dispose();
    }
  });
});

describe("portability of the native sources", () => {
  // Syntax-only compiles of every source for a non-Linux POSIX system (Linux-only macros hidden)
  // and for aarch64: see scripts/check-portability.mjs.
  const gxx = spawnSync(process.env["CXX"] || "g++", ["--version"]).status === 0;
  if (!gxx) {
    console.warn("skipping the portability check: no g++ (set CXX) to compile with");
  }
  it.skipIf(!gxx)(
    "compiles for macOS / the BSDs and for aarch64",
    async () => {
      const script = path.join(packageRoot, "scripts", "check-portability.mjs");
      const out = await new Promise<string>((resolve, reject) => {
        const child = spawn(
          process.execPath,
          [script, "--json", "--variants", "host-not-linux,aarch64,aarch64-not-linux"],
          { stdio: ["ignore", "pipe", "inherit"] },
        );
        let text = "";
        child.stdout.on("data", (chunk: Buffer) => {
          text += chunk.toString();
        });
        child.on("error", reject);
        child.on("close", () => resolve(text));
      });
      const results = JSON.parse(out) as {
        variant: string;
        status: string;
        reason?: string;
        failures?: { source: string; output: string }[];
        unlisted?: string[];
      }[];
      for (const r of results) {
        if (r.status === "skipped") {
          console.warn(`portability check ${r.variant} skipped: ${r.reason}`);
          continue;
        }
        expect(
          { variant: r.variant, failures: r.failures, unlisted: r.unlisted },
          JSON.stringify(r.failures, null, 2),
        ).toEqual({ variant: r.variant, failures: [] });
      }
      expect(results.find((r) => r.variant === "host-not-linux")?.status).toBe("ok");
    },
    180_000,
  );
});
