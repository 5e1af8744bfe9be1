/**
 * `bitnet bench`: llama-bench for our engine. pp<N> evaluates N prompt tokens as one batch from
 * an empty cache; tg<N> generates N tokens one step at a time from an empty cache. With
 * -d <D> (llama-bench's --n-depth) each test starts from a context that already holds D tokens
 * instead ("pp128 @ d3000"), filled once per depth and untimed, and is erased back to it after
 * each repetition, so decode deep in a conversation is measured (its attention reads the D
 * positions' KV cache every token). With
 * --compare-llama the same tests run through llama.cpp (node-llama-cpp) on the same file in the
 * same run, interleaved repetition by repetition so machine noise hits both alike. The decode
 * bound is bytes read per generated token / read bandwidth, both measured by this command.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import {
  assertLlamaCanLoad,
  assertLlamaCpuVariantRunnable,
  type LlamaBenchSession,
  llamaCpuVariantFor,
  openLlamaBench,
} from "@bitnet-ts/crossval";
import { type CompiledModel, loadModel } from "@bitnet-ts/engine-core";
import type { GgufFile } from "@bitnet-ts/gguf";
import { measureReadBandwidth } from "@bitnet-ts/kernels-cpu";
import { cacheDir, defaultModelPath } from "../default-model";
import { CliInputError } from "../errors";
import {
  backendField,
  backendOptionsOf,
  cpuFlagsOf,
  type HeadQuantization,
  headOf,
  type ModelOptions,
} from "../options";
import { checkOutputPath } from "../output-file";
import type { CliIo } from "../program";
import { loadProgress } from "../progress";
import { backendSection, modelSection, receiptHeader, writeReceipt } from "../receipt";
import { formatBytes, formatTable } from "../table";
import { formatHeadAccuracy, type HeadAccuracy, measureHeadAccuracy } from "./head-accuracy";

export interface BenchCliOptions extends ModelOptions {
  nPrompt?: number[];
  nGen?: number[];
  /** Tokens already in the context when each test starts (default [0]). */
  nDepth?: number[];
  reps?: number;
  json?: boolean;
  compareLlama?: boolean;
  receipt?: string;
}

export interface BenchResult {
  readonly engine: "bitnet-ts" | "llama.cpp";
  readonly test: string;
  readonly tps_mean: number;
  readonly tps_std: number;
  readonly tps_median: number;
  readonly reps: number;
  readonly samples: readonly number[];
}

export interface BenchBound {
  /**
   * Bandwidth of the memory the weights are read from in this run (GB/s): the median of the
   * probes paired with our tg repetitions (`paired`), else the best of the probes after the tests.
   */
  readonly bandwidth_gbs: number;
  /** Where the weights are read from: the file's mapping, anonymous memory, or GPU memory. */
  readonly memory: "file-mapping" | "anonymous" | "gpu";
  /** Weights read per generated token (+ the KV cache at the tg test's mean position, depth included). */
  readonly bytes_per_token: number;
  /** The decode speed that bandwidth allows. */
  readonly tg_tps: number;
  /**
   * Our tg speed over the bound (1 = at the bound): with `paired`, the median over repetitions
   * of each repetition's speed over the bound its own probes give; else the tg median over
   * tg_tps.
   */
  readonly fraction: number | null;
  /**
   * Whether the bandwidth was probed right before and right after each of our tg repetitions
   * (the faster of the two counts), so that a machine whose speed drifts during the run (a VM's
   * neighbours) is held to the bandwidth it had while that repetition ran.
   */
  readonly paired: boolean;
  /** Per tg repetition (paired): the bandwidth its probes gave, and its speed over that bound. */
  readonly bandwidth_samples_gbs: readonly number[];
  readonly fraction_samples: readonly number[];
}

export interface BenchReport {
  readonly model: string;
  readonly model_bytes: number;
  readonly params: number;
  readonly backend: string;
  readonly threads: number;
  readonly mmap: boolean;
  /**
   * Share of the mapped file held in 2 MiB page-table entries (Linux; null without a native
   * mmap'd model). Low when the file's page cache holds small pages, e.g. right after a copy.
   */
  readonly huge_page_fraction: number | null;
  /**
   * Bytes of the file the load dropped from the page cache and read again, because their 2 MiB
   * ranges were cached only in part (null without a native mmap'd model).
   */
  readonly reread_bytes: number | null;
  readonly load_ms: number;
  /** Peak resident memory of the process after the tests (null with --compare-llama). */
  readonly peak_rss_bytes: number | null;
  readonly results: readonly BenchResult[];
  readonly bound: BenchBound | null;
  readonly bandwidth: { readonly file_mapping_gbs: number; readonly anonymous_gbs: number } | null;
  /**
   * On a GPU backend: its device-to-device copy bandwidth (bytes read + written per second,
   * median of 10 copies of 1 GiB) measured in this run, and the GPU memory the model holds.
   */
  readonly gpu: {
    readonly copy_gbs: number;
    readonly weight_bytes: number;
    readonly scratch_bytes: number;
    readonly kv_bytes: number;
  } | null;
  readonly llama: string | null;
  /**
   * llama.cpp's CPU backend with --compare-llama: the ggml variant that ran (libggml-cpu-<variant>,
   * null if unknown), the one forced to match --kernel-path (null: ggml picked the best for this
   * CPU), the instruction-set features llama.cpp reports for it and its library file (Linux).
   */
  readonly llama_cpu: {
    readonly variant: string | null;
    readonly requested: string | null;
    readonly features: readonly string[];
    readonly library: string | null;
  } | null;
  /** Median tokens/s ratios bitnet-ts / llama.cpp per test, from the same run. */
  readonly speedup: Readonly<Record<string, number>> | null;
  /** With --head q8_0|q6_k: the quantized head against the file's, measured in this run. */
  readonly head_accuracy: HeadAccuracy | null;
}

interface Engine {
  readonly name: "bitnet-ts" | "llama.cpp";
  /** Fills the context the tests start from with `tokens` (untimed); [] empties it. */
  setDepth(tokens: readonly number[]): Promise<void>;
  /** Milliseconds to evaluate `tokens` as one batch after the depth; the context is back to it after. */
  prefill(tokens: readonly number[]): Promise<number>;
  /** Milliseconds to evaluate `tokens` one per step after the depth; the context is back to it after. */
  decode(tokens: readonly number[]): Promise<number>;
}

/** Prompt tokens per step while a depth is filled. */
const DEPTH_CHUNK = 512;

function ours(model: CompiledModel): Engine {
  // The sequence every test continues and is truncated back to (one per depth).
  let base: number | undefined;
  let depth = 0;
  const start = (): number => base ?? model.createSequence();
  const finish = (seq: number): void => {
    if (base === undefined) {
      model.freeSequence(seq);
    } else {
      model.truncateSequence(seq, depth);
    }
  };
  return {
    name: "bitnet-ts",
    async setDepth(tokens) {
      if (base !== undefined) {
        model.freeSequence(base);
        base = undefined;
      }
      depth = tokens.length;
      if (depth === 0) {
        return;
      }
      base = model.createSequence();
      for (let i = 0; i < depth; i += DEPTH_CHUNK) {
        const chunk = tokens.slice(i, i + DEPTH_CHUNK);
        await model.step([{ sequence: base, tokens: chunk, logits: "none" }]);
      }
    },
    async prefill(tokens) {
      const seq = start();
      const started = performance.now();
      // transient: the logits are computed (as llama-bench does) but never kept.
      await model.step([{ sequence: seq, tokens, logits: "last", transient: true }]);
      const ms = performance.now() - started;
      finish(seq);
      return ms;
    },
    async decode(tokens) {
      const seq = start();
      const started = performance.now();
      for (const token of tokens) {
        await model.step([{ sequence: seq, tokens: [token], transient: true }]);
      }
      const ms = performance.now() - started;
      finish(seq);
      return ms;
    },
  };
}

function theirs(session: LlamaBenchSession): Engine {
  return {
    name: "llama.cpp",
    setDepth: (t) => session.setDepth(t),
    prefill: (t) => session.prefill(t),
    decode: (t) => session.decode(t),
  };
}

/** A test's name as llama-bench prints it: "tg64", or "tg64 @ d3000" after a depth. */
function testName(kind: "pp" | "tg", n: number, depth: number): string {
  return depth === 0 ? `${kind}${n}` : `${kind}${n} @ d${depth}`;
}

/** Token ids for the tests: seeded, spread over the vocabulary (as llama-bench's random tokens). */
function benchTokens(n: number, vocab: number, seed: number): number[] {
  let state = seed >>> 0 || 1;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    out.push(state % Math.min(vocab, 100_000));
  }
  return out;
}

function stats(samples: readonly number[]): { mean: number; std: number; median: number } {
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  const std =
    samples.length > 1
      ? Math.sqrt(samples.reduce((a, b) => a + (b - mean) ** 2, 0) / (samples.length - 1))
      : 0;
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { mean, std, median };
}

/** Bytes per value of the head types the CPU backend requantizes to, and their block widths. */
const HEAD_BYTES: Readonly<Record<HeadQuantization, { bytes: number; block: number }>> = {
  q8_0: { bytes: 34, block: 32 },
  q6_k: { bytes: 210, block: 256 },
};
const REQUANTIZABLE_HEADS = ["F32", "F16", "BF16", "Q8_0", "Q6_K"];

/**
 * Bytes one generated token reads: every weight once (a tied head reads the whole embedding).
 * The CPU backend reads TQ1_0 weights as the TQ2_0 it repacks them to at load (`tq1AsTq2`; not
 * with --tq1 direct), and a head requantized at load (`head`) at that type's size.
 */
export function bytesPerToken(
  file: GgufFile,
  head: HeadQuantization | undefined,
  kvBytes: number,
  tq1AsTq2 = false,
): number {
  const embd = file.findTensor("token_embd.weight");
  const untiedOutput = file.findTensor("output.weight");
  let bytes = 0;
  for (const t of file.tensors) {
    bytes += tq1AsTq2 && t.type.name === "TQ1_0" ? (t.elementCount / 256) * 66 : t.byteSize;
  }
  if (embd !== undefined && untiedOutput !== undefined) {
    bytes -= embd.byteSize - embd.byteSize / (embd.shape[1] ?? 1); // the lookup reads one row
  }
  const headTensor = untiedOutput ?? embd;
  if (
    head !== undefined &&
    headTensor !== undefined &&
    headTensor.type.name !== head.toUpperCase() &&
    REQUANTIZABLE_HEADS.includes(headTensor.type.name) &&
    (headTensor.shape[0] ?? 0) % HEAD_BYTES[head].block === 0
  ) {
    const { bytes: b, block } = HEAD_BYTES[head];
    bytes += (headTensor.elementCount / block) * b - headTensor.byteSize;
  }
  return bytes + kvBytes;
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}

function params(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} B` : `${(n / 1e6).toFixed(2)} M`;
}

export async function runBench(options: BenchCliOptions, io: CliIo): Promise<BenchReport> {
  if (options.receipt !== undefined) {
    checkOutputPath(options.receipt, "--receipt");
  }
  const modelPath = options.model ?? (await defaultModelPath((line) => io.stderr(`${line}\n`)));
  const nPrompt = options.nPrompt ?? [128];
  const nGen = options.nGen ?? [64];
  const nDepth = [...new Set(options.nDepth ?? [0])];
  if ([...nPrompt, ...nGen].every((n) => n === 0)) {
    throw new CliInputError("could not bench - -p and -n are all 0: there is nothing to measure.");
  }
  const reps = options.reps ?? 5;
  const mmap = options.mmap !== false;
  const progress = (line: string): void => {
    io.stderr(`bitnet bench: ${line}\n`);
  };

  // With a forced kernel path llama.cpp runs its build for the same instruction set (avx2 →
  // haswell, …) and nothing else; refuse before loading anything when this CPU cannot run it.
  const llamaVariant =
    options.compareLlama && options.kernelPath !== undefined
      ? llamaCpuVariantFor(options.kernelPath)
      : undefined;
  if (llamaVariant !== undefined) {
    assertLlamaCpuVariantRunnable(llamaVariant);
  }
  if (options.compareLlama) {
    assertLlamaCanLoad(modelPath);
  }

  progress(`loading ${path.basename(modelPath)}`);
  const started = performance.now();
  // Room for the head-accuracy text too when --head is given (the cache grows only as used).
  const contextLength =
    Math.max(...nDepth) +
    Math.max(...nPrompt, ...nGen, headOf(options) === undefined ? 0 : 256) +
    16;
  const loading = loadProgress();
  const model = await loadModel(modelPath, {
    onProgress: loading.onProgress,
    ...backendField(options),
    ...(options.ffnAct === undefined ? {} : { ffnActivation: options.ffnAct }),
    backendOptions: backendOptionsOf(options),
    contextLength,
    onLog: (line) => io.stderr(`bitnet: ${line}\n`),
  }).finally(loading.stop);
  const loadMs = performance.now() - started;
  const native =
    "info" in model
      ? (
          model as unknown as {
            info(): {
              kernelPath: string;
              threads: number;
              mappedBytes: number;
              hugeMappedBytes?: number;
              rereadBytes?: number;
            };
          }
        ).info()
      : undefined;
  const threads = native?.threads ?? options.threads ?? 1;
  const backend =
    native === undefined ? model.backendName : `${model.backendName} ${native.kernelPath}`;
  const file = model.description.file;
  const hp = model.description.hparams;
  let session: LlamaBenchSession | undefined;
  try {
    const engines: Engine[] = [ours(model)];
    if (options.compareLlama) {
      progress(
        `loading the same file in llama.cpp (node-llama-cpp${llamaVariant === undefined ? "" : `, only its ${llamaVariant} CPU variant, to match --kernel-path ${options.kernelPath}`})`,
      );
      session = await openLlamaBench(modelPath, {
        threads,
        contextSize: contextLength,
        // The longest prompt in one batch, and a depth in batches of DEPTH_CHUNK (at least 1).
        batchSize: Math.max(...nPrompt, Math.min(DEPTH_CHUNK, Math.max(...nDepth)), 1),
        useMmap: mmap,
        ...(llamaVariant === undefined
          ? {}
          : {
              cpuVariant: llamaVariant,
              variantCacheDir: path.join(cacheDir(), "llama-cpu-variants"),
            }),
      });
      progress(
        `llama.cpp runs ggml's ${session.cpu.variant ?? "(unidentified)"} CPU backend${session.cpu.library === null ? "" : ` (${session.cpu.library})`}`,
      );
      engines.push(theirs(session));
    }
    interface Test {
      readonly name: string;
      readonly depth: number;
      readonly tokens: number;
      run(e: Engine): Promise<number>;
    }
    const tests: Test[] = nDepth.flatMap((depth) => [
      ...nPrompt
        .filter((n) => n > 0)
        .map((n) => {
          const tokens = benchTokens(n, hp.vocabSize, n);
          return {
            name: testName("pp", n, depth),
            depth,
            tokens: n,
            run: (e: Engine) => e.prefill(tokens),
          };
        }),
      ...nGen
        .filter((n) => n > 0)
        .map((n) => {
          const tokens = benchTokens(n, hp.vocabSize, 7919 + n);
          return {
            name: testName("tg", n, depth),
            depth,
            tokens: n,
            run: (e: Engine) => e.decode(tokens),
          };
        }),
    ]);
    progress("warm-up");
    for (const e of engines) {
      await e.prefill(benchTokens(Math.min(32, contextLength - 1), hp.vocabSize, 1));
      await e.decode(benchTokens(4, hp.vocabSize, 2));
    }
    // The decode bound's bandwidth, probed around each of our tg repetitions (the first tg test)
    // on the memory the weights are read from: one pass in each of the probe's ways, the fastest kept.
    const pairedTest =
      native === undefined ? undefined : tests.find((t) => t.name.startsWith("tg"));
    // The engine's peak memory is read before the first probe maps the file a second time (or
    // fills anonymous memory); by then it has loaded, warmed up and run this repetition's pp.
    let peakBeforeProbes: number | undefined;
    const probeWeights = async (): Promise<number> => {
      peakBeforeProbes ??= process.resourceUsage().maxRSS * 1024;
      return (
        await measureReadBandwidth(
          mmap ? { path: modelPath, threads, reps: 2 } : { threads, reps: 2 },
        )
      ).bestGbs;
    };
    const pairedBandwidth: number[] = [];
    const samples = new Map<string, number[]>();
    for (const depth of nDepth) {
      // Each engine's context filled once per depth (untimed); every test continues it and is
      // erased back to it.
      if (depth > 0 || nDepth.length > 1) {
        const tokens = benchTokens(depth, hp.vocabSize, 104729 + depth);
        for (const e of engines) {
          if (depth > 0) {
            progress(`filling ${e.name}'s context with ${depth} tokens`);
          }
          await e.setDepth(tokens);
        }
      }
      const atDepth = tests.filter((t) => t.depth === depth);
      for (let rep = 0; rep < reps; rep++) {
        for (const test of atDepth) {
          // Alternate which engine goes first, so drift in machine speed favours neither.
          const order = rep % 2 === 0 ? engines : [...engines].reverse();
          for (const e of order) {
            const paired = test === pairedTest && e.name === "bitnet-ts";
            const before = paired ? await probeWeights() : 0;
            const ms = await test.run(e);
            if (paired) {
              pairedBandwidth.push(Math.max(before, await probeWeights()));
            }
            const key = `${e.name}\u0000${test.name}`;
            samples.set(key, [...(samples.get(key) ?? []), (test.tokens * 1000) / ms]);
          }
        }
        progress(`${depth > 0 ? `depth ${depth}: ` : ""}repetition ${rep + 1}/${reps} done`);
      }
    }
    // The process's peak before the bandwidth probes (which map the file again and fill 1 GiB of
    // anonymous memory): what the engine itself needed. Not meaningful with llama.cpp loaded too.
    const peakRssBytes =
      session === undefined ? (peakBeforeProbes ?? process.resourceUsage().maxRSS * 1024) : null;
    // A quantized head's accuracy, next to its speed: the file's head scores the same text.
    const head = headOf(options);
    let headAccuracy: HeadAccuracy | null = null;
    if (head !== undefined && native !== undefined) {
      progress(`comparing the ${head} head with the file's head`);
      const { head: _quantized, headQ8_0: _alias, ...fileHead } = options;
      headAccuracy = await measureHeadAccuracy(model, modelPath, head, (p, contextLength) =>
        loadModel(p, {
          ...backendField(options),
          ...(options.ffnAct === undefined ? {} : { ffnActivation: options.ffnAct }),
          backendOptions: backendOptionsOf(fileHead),
          contextLength,
        }),
      );
    }
    // Bandwidth after the tests, while nothing else runs: the model's own file through a
    // read-only mapping (what mmap'd weights stream from) and anonymous huge-page memory.
    let bandwidth: BenchReport["bandwidth"] = null;
    if (native !== undefined) {
      progress(`measuring read bandwidth with ${threads} threads`);
      const fileBw = await measureReadBandwidth({ path: modelPath, threads });
      const anonBw = await measureReadBandwidth({ threads });
      bandwidth = { file_mapping_gbs: fileBw.bestGbs, anonymous_gbs: anonBw.bestGbs };
    }
    // A GPU backend's bound: its own memory's bandwidth, from a device-to-device copy.
    let gpu: BenchReport["gpu"] = null;
    const gpuMemory = gpuMemoryOf(model);
    if (gpuMemory !== undefined) {
      progress("measuring the GPU's copy bandwidth");
      const { CudaKernels } = await import("@bitnet-ts/kernels-cuda");
      gpu = {
        copy_gbs: new CudaKernels().copyBandwidth(1 << 30, 10).gbs,
        weight_bytes: gpuMemory.weightBytes,
        scratch_bytes: gpuMemory.scratchBytes,
        kv_bytes: gpuMemory.kvBytes,
      };
    }
    const results: BenchResult[] = [];
    for (const e of engines) {
      for (const test of tests) {
        const s = samples.get(`${e.name}\u0000${test.name}`)!;
        const { mean, std, median } = stats(s);
        results.push({
          engine: e.name,
          test: test.name,
          tps_mean: mean,
          tps_std: std,
          tps_median: median,
          reps: s.length,
          samples: s,
        });
      }
    }
    let bound: BenchBound | null = null;
    // The bound is the first tg test's (the one whose repetitions the probes pair with): its
    // tokens' mean position, past its depth, sets how much KV cache a token reads.
    const tgTest = tests.find((t) => t.name.startsWith("tg"));
    const meanPosition = tgTest === undefined ? 0 : tgTest.depth + (tgTest.tokens + 1) / 2;
    const ourTg = results.find((r) => r.engine === "bitnet-ts" && r.test === tgTest?.name);
    if (gpu !== null) {
      const kvWidth = hp.nHeadKv * hp.headDim;
      const bytes = bytesPerToken(
        file,
        undefined,
        2 * hp.nLayer * kvWidth * 2 * meanPosition,
        true,
      );
      const tgTps = (gpu.copy_gbs * 1e9) / bytes;
      bound = {
        bandwidth_gbs: gpu.copy_gbs,
        memory: "gpu",
        bytes_per_token: bytes,
        tg_tps: tgTps,
        fraction: ourTg === undefined ? null : ourTg.tps_median / tgTps,
        paired: false,
        bandwidth_samples_gbs: [],
        fraction_samples: [],
      };
    } else if (bandwidth !== null) {
      const kvWidth = hp.nHeadKv * hp.headDim;
      const kvBytes = 2 * hp.nLayer * kvWidth * 2 * meanPosition; // K and V, f16
      const bytes = bytesPerToken(
        file,
        headOf(options),
        kvBytes,
        model.backendName === "cpu" && options.tq1 !== "direct",
      );
      const paired = ourTg !== undefined && pairedBandwidth.length === ourTg.samples.length;
      const fractions = paired
        ? ourTg.samples.map((tps, i) => (tps * bytes) / (pairedBandwidth[i]! * 1e9))
        : [];
      const gbs = paired
        ? stats(pairedBandwidth).median
        : mmap
          ? bandwidth.file_mapping_gbs
          : bandwidth.anonymous_gbs;
      const tgTps = (gbs * 1e9) / bytes;
      bound = {
        bandwidth_gbs: gbs,
        memory: mmap ? "file-mapping" : "anonymous",
        bytes_per_token: bytes,
        tg_tps: tgTps,
        fraction:
          ourTg === undefined ? null : paired ? stats(fractions).median : ourTg.tps_median / tgTps,
        paired,
        bandwidth_samples_gbs: paired ? pairedBandwidth : [],
        fraction_samples: fractions,
      };
    }
    let speedup: Record<string, number> | null = null;
    if (session !== undefined) {
      speedup = {};
      for (const test of tests) {
        const a = results.find((r) => r.engine === "bitnet-ts" && r.test === test.name)!;
        const b = results.find((r) => r.engine === "llama.cpp" && r.test === test.name)!;
        speedup[test.name] = a.tps_median / b.tps_median;
      }
    }
    let modelBytes = 0;
    for (const t of file.tensors) {
      modelBytes += t.byteSize;
    }
    const report: BenchReport = {
      model: modelPath,
      model_bytes: fs.statSync(modelPath).size,
      params: file.tensors.reduce((n, t) => n + t.elementCount, 0),
      backend,
      threads,
      mmap,
      huge_page_fraction:
        native !== undefined && native.mappedBytes > 0 && native.hugeMappedBytes !== undefined
          ? native.hugeMappedBytes / native.mappedBytes
          : null,
      reread_bytes:
        native !== undefined && native.mappedBytes > 0 ? (native.rereadBytes ?? null) : null,
      load_ms: loadMs,
      peak_rss_bytes: peakRssBytes,
      results,
      bound,
      bandwidth,
      gpu,
      llama: session?.label ?? null,
      llama_cpu:
        session === undefined
          ? null
          : {
              variant: session.cpu.variant,
              requested: session.cpu.requested,
              features: [...session.cpu.features],
              library: session.cpu.library,
            },
      speedup,
      head_accuracy: headAccuracy,
    };
    if (options.receipt !== undefined) {
      const steps = results.filter((r) => r.engine === "bitnet-ts");
      const mean = (test: string) => steps.find((r) => r.test === test)?.tps_mean ?? 0;
      const pp = tests.find((t) => t.name.startsWith("pp"));
      writeReceipt(options.receipt, {
        ...receiptHeader(),
        kind: "bench",
        model: await modelSection(model, modelPath, (line) => progress(line)),
        backend: backendSection(model, cpuFlagsOf(options), options.threads),
        context_length: model.contextLength,
        sampling: null,
        prompt_tokens: [],
        generated_tokens: [],
        finish_reason: null,
        timings: {
          load_ms: loadMs,
          prefill_ms: pp === undefined ? 0 : (pp.tokens * 1000) / Math.max(mean(pp.name), 1e-9),
          decode_ms:
            tgTest === undefined ? 0 : (tgTest.tokens * 1000) / Math.max(mean(tgTest.name), 1e-9),
          prefill_tokens_per_second: pp === undefined ? 0 : mean(pp.name),
          decode_tokens_per_second: tgTest === undefined ? 0 : mean(tgTest.name),
        },
        bench: {
          results: results.map((r) => ({ ...r, samples: [...r.samples] })),
          bound:
            bound === null
              ? null
              : {
                  bandwidth_gbs: bound.bandwidth_gbs,
                  memory: bound.memory,
                  bytes_per_token: bound.bytes_per_token,
                  tg_tps: bound.tg_tps,
                },
        },
      });
      progress(`receipt written to ${options.receipt}`);
    }
    if (options.json) {
      io.stdout(`${JSON.stringify(report)}\n`);
    } else {
      io.stdout(`${formatBench(report, modelBytes)}\n`);
    }
    return report;
  } finally {
    await session?.dispose();
    await model.dispose();
  }
}

/** "lo-hi" of some values, with the given decimals. */
function range(values: readonly number[], digits: number): string {
  const lo = Math.min(...values).toFixed(digits);
  const hi = Math.max(...values).toFixed(digits);
  return lo === hi ? lo : `${lo}-${hi}`;
}

/** The GPU memory a compiled model holds, when its backend runs on a GPU (kernels-cuda's CudaModel). */
function gpuMemoryOf(
  model: CompiledModel,
): { weightBytes: number; scratchBytes: number; kvBytes: number } | undefined {
  if (!("memory" in model) || typeof model.memory !== "function") {
    return undefined;
  }
  const m = (model.memory as () => Record<string, unknown>)();
  return m["executor"] === "cuda"
    ? {
        weightBytes: m["weightBytes"] as number,
        scratchBytes: m["scratchBytes"] as number,
        kvBytes: m["kvBytes"] as number,
      }
    : undefined;
}

/** The llama-bench table, then ratios and the bandwidth bound. */
export function formatBench(report: BenchReport, weightBytes: number): string {
  const name = path.basename(report.model);
  const rows = report.results.map((r) => [
    name,
    gib(weightBytes),
    params(report.params),
    r.engine === "bitnet-ts" ? `bitnet-ts ${report.backend}` : (report.llama ?? "llama.cpp"),
    String(report.threads),
    r.test,
    `${r.tps_mean.toFixed(2)} ± ${r.tps_std.toFixed(2)}`,
    r.tps_median.toFixed(2),
  ]);
  const lines = [
    formatTable(
      [
        { header: "model" },
        { header: "size", align: "right" },
        { header: "params", align: "right" },
        { header: "backend" },
        { header: "threads", align: "right" },
        { header: "test" },
        { header: "t/s", align: "right" },
        { header: "median", align: "right" },
      ],
      rows,
    ),
  ];
  if (report.speedup !== null) {
    lines.push(
      "",
      `bitnet-ts / llama.cpp (medians, same run): ${Object.entries(report.speedup)
        .map(([test, x]) => `${test} ${x.toFixed(2)}×`)
        .join(", ")}`,
    );
  }
  if (report.llama_cpu !== null) {
    const cpu = report.llama_cpu;
    lines.push(
      `llama.cpp CPU backend: ${cpu.variant === null ? "unidentified" : `ggml-cpu-${cpu.variant}`}${
        cpu.requested !== null
          ? ", forced to match the kernel path"
          : " (ggml's pick for this CPU; --kernel-path makes llama.cpp run its matching variant)"
      }; features ${cpu.features.join(" ") || "baseline only"}`,
    );
  }
  if (report.bound !== null && report.gpu !== null) {
    const b = report.bound;
    const g = report.gpu;
    lines.push(
      "",
      `GPU copy bandwidth: ${g.copy_gbs.toFixed(0)} GB/s (device to device, bytes read + written, median of 10 × 1 GiB)`,
      `decode bound: ${(b.bytes_per_token / 1e9).toFixed(3)} GB read per token at ${b.bandwidth_gbs.toFixed(0)} GB/s = ${b.tg_tps.toFixed(0)} t/s${b.fraction === null ? "" : `; measured ${(b.fraction * 100).toFixed(0)}% of it`}`,
      `GPU memory: weights ${formatBytes(g.weight_bytes)}, scratch ${formatBytes(g.scratch_bytes)}, KV ${formatBytes(g.kv_bytes)} = ${((g.weight_bytes + g.scratch_bytes + g.kv_bytes) / g.weight_bytes).toFixed(3)} × the weights`,
    );
  }
  if (report.bound !== null && report.bandwidth !== null) {
    const b = report.bound;
    lines.push(
      "",
      `read bandwidth (${report.threads} threads, best of 5): file mapping ${report.bandwidth.file_mapping_gbs.toFixed(1)} GB/s, anonymous memory ${report.bandwidth.anonymous_gbs.toFixed(1)} GB/s`,
      `decode bound: ${(b.bytes_per_token / 1e9).toFixed(3)} GB read per token at ${b.bandwidth_gbs.toFixed(1)} GB/s (${b.memory === "file-mapping" ? "weights mapped from the file" : "weights in anonymous memory, --no-mmap"}${b.paired ? `; median of the probes around each tg repetition, ${range(b.bandwidth_samples_gbs, 1)}` : ""}) = ${b.tg_tps.toFixed(2)} t/s${b.fraction === null ? "" : `; measured ${(b.fraction * 100).toFixed(0)}% of it`}${
        b.paired
          ? ` (median of the repetitions, each against its own probes: ${range(
              b.fraction_samples.map((f) => f * 100),
              0,
            )}%)`
          : ""
      }`,
    );
  }
  if (report.huge_page_fraction !== null) {
    const share = report.huge_page_fraction;
    lines.push(
      `weights mapped in 2 MiB pages: ${(share * 100).toFixed(0)}%${
        report.reread_bytes !== null && report.reread_bytes > 0
          ? ` (${(report.reread_bytes / 1e6).toFixed(1)} MB of partly cached 2 MiB ranges read again to get them)`
          : ""
      }${
        // Reading the header with read() leaves its ranges (and readahead's) in small pages
        // whatever happens: tens of MB, not worth a hint by themselves.
        share < 0.9 && (1 - share) * report.model_bytes > 64e6
          ? "; the page cache holds the rest of this file in small pages, which decode reads up to ~10% slower: once the file is out of the page cache (`dd if=FILE iflag=nocache count=0` drops it, or a reboot), the next load reads it back in 2 MiB pages; --no-mmap copies it into 2 MiB pages now"
          : ""
      }`,
    );
  }
  if (report.head_accuracy !== null) {
    lines.push(formatHeadAccuracy(report.head_accuracy));
  }
  lines.push(
    `load ${report.load_ms.toFixed(0)} ms${
      report.peak_rss_bytes === null
        ? ""
        : `; peak RSS ${(report.peak_rss_bytes / 1e9).toFixed(3)} GB = ${(report.peak_rss_bytes / weightBytes).toFixed(3)} × the weights`
    }`,
  );
  return lines.join("\n");
}
