/**
 * The prepared GPU check (`pnpm device:cuda:pack` bundles it; run.sh runs it on the GPU machine,
 * which has no Node.js toolchain, no vitest and no network). Every check the GPU needs, in one
 * process, each bounded in time, written as one JSON summary:
 *
 * - kernels: the I2_S kernel on the GPU against its host twin, bit for bit, on the 2B-4T shapes;
 *   the f16 kernel against an f64 sum; the top-k selection against engine-core's topKRows;
 * - op by op against the reference backend (tiny-i2s, tiny-tq2, tiny-tq1);
 * - the contract: one-by-one decode equals the batched prompt, a batch of two sequences equals
 *   each alone (bit for bit), and the GPU's logits against the host twins' and the CPU backend's;
 * - golden greedy tokens;
 * - `bitnet serve --backend cuda` (the server in this process): health, a greedy completion
 *   streamed and not (the same text), 64 requests at once, all answered;
 * - benchmarks on the 2B-4T-shaped bench-i2s (generated there): load, pp512, tg128, aggregate
 *   decode at 8 and 64 sequences, memory, the device copy bandwidth and the decode bound, the
 *   ternary GEMV alone on the 2B-4T shapes, and the prompt kernels (dp4a against tensor cores)
 *   from 16 to 512 tokens.
 *
 * `node device-check.mjs <out-dir> [--host]`: --host runs the model checks on the host twins
 * instead (a dry run of the script on a machine without a GPU; no benchmarks).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { loadModel, readModelDescription, registerBackend, topKRows } from "@bitnet-ts/engine-core";
import {
  captureReference,
  compareOpByOp,
  greedyTokens,
  logitsBatched,
  logitsOneByOne,
  opViolations,
} from "@bitnet-ts/engine-core/testing";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { Tokenizer } from "@bitnet-ts/tokenizers";
// The server by its source path, not as a dependency: the server depends on this package, and a
// dependency back would make the workspace's graph a cycle. The bundle carries it either way.
import { startServer } from "../../../apps/server/src/index";
import { CudaBackend, type CudaModel } from "../src/backend";
import { CudaKernels } from "../src/native";
import { CUDA_OP_TOLERANCES } from "./tolerances";

// Static imports, so that the bundle carries the CPU backend (engine-core imports backends by name).
registerBackend("cpu", () => import("@bitnet-ts/kernels-cpu"));

const outDir = process.argv[2] ?? ".";
const hostOnly = process.argv.includes("--host");
// --quick: tiny-i2s's checks alone, no golden tokens and no timings (run.sh's compute-sanitizer
// pass, where every kernel runs tens of times slower).
const quick = process.argv.includes("--quick");
const execution = hostOnly ? "host" : "device";
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cuda-check-"));
const started = Date.now();

interface CheckResult {
  name: string;
  ok: boolean;
  ms: number;
  details?: unknown;
  error?: string;
}
const summary: {
  started: string;
  execution: string;
  device?: unknown;
  checks: CheckResult[];
  bench?: Record<string, unknown>;
  kernels?: unknown[];
  passed?: number;
  failed?: number;
} = { started: new Date().toISOString(), execution, checks: [] };

function save(): void {
  summary.passed = summary.checks.filter((c) => c.ok).length;
  summary.failed = summary.checks.filter((c) => !c.ok).length;
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, "cuda-check.json"), `${JSON.stringify(summary, null, 2)}\n`);
}

async function check(name: string, run: () => Promise<unknown> | unknown): Promise<void> {
  const t0 = Date.now();
  try {
    const details = await run();
    summary.checks.push({ name, ok: true, ms: Date.now() - t0, details });
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (error) {
    const message =
      error instanceof Error ? `${error.message}\n${error.stack ?? ""}` : String(error);
    summary.checks.push({ name, ok: false, ms: Date.now() - t0, error: message.slice(0, 4000) });
    console.log(`FAIL ${name}: ${message.split("\n")[0]}`);
  }
  save();
}

function assert(condition: boolean, message: string): void {
  if (!condition) {
    throw new Error(message);
  }
}

async function fixture(name: string): Promise<string> {
  const file = path.join(tmp, `${name}.gguf`);
  if (!fs.existsSync(file)) {
    await writeFixture(PRESETS[name]!, file);
  }
  return file;
}

async function compiled(name: string, contextLength = 64, maxBatch?: number): Promise<CudaModel> {
  const backend = new CudaBackend({ execution, ...(maxBatch === undefined ? {} : { maxBatch }) });
  return backend.compile(await readModelDescription(await fixture(name)), { contextLength });
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  }
  return worst;
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) {
    if (row[i]! > row[best]!) {
      best = i;
    }
  }
  return best;
}

const LONG_PROMPT = [
  128000, 791, 6864, 315, 9822, 374, 12366, 13, 578, 4062, 14198, 39935, 35308, 927, 279, 16053,
  5679, 13, 358, 1093,
];
const OTHER = [128000, 5451, 5304, 264, 892, 11, 358, 1093, 279, 16053, 5679, 13];
const TINY = quick ? ["tiny-i2s"] : ["tiny-i2s", "tiny-tq2", "tiny-tq1"];

const kernels = new CudaKernels();
summary.device = kernels.status();
save();

if (!hostOnly) {
  await check(
    "I2_S kernel: GPU equals its host twin, bit for bit (2B-4T shapes, 1, 3 and 9 tokens)",
    () => {
      const shapes: [number, number][] = [
        [2560, 2560],
        [3840, 2560],
        [13824, 2560],
        [2560, 6912],
      ];
      let seed = 7;
      const rnd = () => {
        seed = (seed * 1103515245 + 12345) >>> 0;
        return seed / 4294967296;
      };
      for (const [rows, cols] of shapes) {
        for (const tokens of [1, 3, 9, 16, 77]) {
          const codes = new Uint8Array((rows * cols) / 4);
          for (let i = 0; i < codes.length; i++) {
            // Four 2-bit codes per byte, each 0, 1 or 2.
            codes[i] =
              Math.floor(rnd() * 3) |
              (Math.floor(rnd() * 3) << 2) |
              (Math.floor(rnd() * 3) << 4) |
              (Math.floor(rnd() * 3) << 6);
          }
          const x = new Float32Array(tokens * cols).map(() => (rnd() - 0.5) * 4);
          const input = { codes, rows, cols, scale: 0.75, x, tokens };
          const gpu = kernels.i2sLinear(input, "device");
          const host = kernels.i2sLinear(input, "host");
          assert(
            Buffer.from(gpu.q.buffer).equals(Buffer.from(host.q.buffer)),
            `${rows}×${cols}×${tokens}: q differs`,
          );
          assert(
            Buffer.from(gpu.y.buffer).equals(Buffer.from(host.y.buffer)),
            `${rows}×${cols}×${tokens}: y differs by up to ${maxAbsDiff(gpu.y, host.y)}`,
          );
        }
      }
      return { shapes };
    },
  );

  await check("f16 kernel: within f32 summation error of an f64 sum", () => {
    const rows = 1000;
    const cols = 2560;
    const w = new Uint16Array(rows * cols).map((_, i) => 0x3000 + ((i * 2654435761) % 0x0c00));
    const x = new Float32Array(cols).map((_, i) => Math.sin(i));
    const y = kernels.f16Linear(w, rows, cols, x, 1);
    let worst = 0;
    for (let r = 0; r < rows; r++) {
      let exact = 0;
      let magnitude = 0;
      for (let c = 0; c < cols; c++) {
        const bits = w[r * cols + c]!;
        const value = 2 ** (((bits >> 10) & 31) - 15) * (1 + (bits & 1023) / 1024);
        exact += value * x[c]!;
        magnitude += Math.abs(value * x[c]!);
      }
      worst = Math.max(worst, Math.abs(y[r]! - exact) / magnitude);
    }
    assert(worst < 1e-6, `relative error ${worst}`);
    return { worstRelativeError: worst };
  });

  await check(
    "top-k kernel: the GPU's selection equals engine-core's topKRows and the host twin",
    () => {
      // 128k-entry rows: distinct values, a few values (ties at every threshold), ±0, ±Infinity and
      // NaN mixed in, all equal, all NaN; k from 1 to the most the GPU selects.
      const vocab = 128256;
      let seed = 7;
      const next = () => {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        return seed / 4294967296;
      };
      const specials = [Number.NaN, 0, -0, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];
      const rows: Float32Array[] = [
        Float32Array.from({ length: vocab }, () => next() * 40 - 20),
        Float32Array.from({ length: vocab }, () => Math.floor(next() * 9)),
        Float32Array.from({ length: vocab }, () =>
          next() < 0.2 ? specials[Math.floor(next() * 5)]! : Math.floor(next() * 50) / 3,
        ),
        new Float32Array(vocab).fill(1.5),
        new Float32Array(vocab).fill(Number.NaN),
      ];
      const logits = new Float32Array(rows.length * vocab);
      for (const [i, row] of rows.entries()) {
        logits.set(row, i * vocab);
      }
      let compared = 0;
      for (const k of [1, 2, 40, 100, kernels.maxDeviceTopK]) {
        const gpu = kernels.topK(logits, rows.length, vocab, k, "device");
        const host = kernels.topK(logits, rows.length, vocab, k, "host");
        const want = topKRows(logits, rows.length, vocab, k);
        for (let i = 0; i < rows.length * k; i++) {
          assert(
            gpu.ids[i] === want.ids[i],
            `k=${k} entry ${i}: id ${gpu.ids[i]}, want ${want.ids[i]}`,
          );
          assert(gpu.ids[i] === host.ids[i], `k=${k} entry ${i}: GPU and host twin differ`);
          assert(
            Object.is(gpu.values[i], want.logits[i]),
            `k=${k} entry ${i}: value ${gpu.values[i]}, want ${want.logits[i]}`,
          );
          compared++;
        }
      }
      return { rows: rows.length, vocab, compared };
    },
  );
}

for (const name of TINY) {
  await check(`${name}: op by op against the reference within the stated tolerances`, async () => {
    const reference = await loadModel(await fixture(name), {
      backend: "reference",
      contextLength: 64,
    });
    const capture = await captureReference(reference, [LONG_PROMPT, [1234], [578, 4062, 14198]]);
    const model = await compiled(name);
    const worst = await compareOpByOp(model, capture);
    await model.dispose();
    await reference.dispose();
    const violations = opViolations(worst, CUDA_OP_TOLERANCES);
    assert(violations.length === 0, violations.join("; "));
    return Object.fromEntries([...worst].map(([k, e]) => [k, e.error]));
  });

  await check(
    `${name}: one-by-one decode and a batch of two sequences equal the batched prompt, bit for bit`,
    async () => {
      const model = await compiled(name);
      const batched = await logitsBatched(model, LONG_PROMPT);
      const single = await logitsOneByOne(model, LONG_PROMPT);
      assert(
        maxAbsDiff(batched, single) === 0,
        `one by one differs by ${maxAbsDiff(batched, single)}`,
      );
      const a = model.createSequence();
      const b = model.createSequence();
      const both = await model.step([
        { sequence: a, tokens: LONG_PROMPT, logits: "all" },
        { sequence: b, tokens: OTHER, logits: "all" },
      ]);
      const otherAlone = await logitsBatched(model, OTHER);
      assert(
        maxAbsDiff(both.runs[0]!.logits, batched) === 0,
        "sequence a differs when batched with b",
      );
      assert(
        maxAbsDiff(both.runs[1]!.logits, otherAlone) === 0,
        "sequence b differs when batched with a",
      );
      await model.dispose();
      return {};
    },
  );

  await check(
    `${name}: decode replayed from the CUDA graph equals decode launched op by op, bit for bit`,
    async () => {
      const graphed = await compiled(name);
      const withGraph = await logitsOneByOne(graphed, LONG_PROMPT);
      await graphed.dispose();
      process.env["BITNET_CUDA_GRAPHS"] = "0";
      try {
        const plain = await compiled(name);
        const withoutGraph = await logitsOneByOne(plain, LONG_PROMPT);
        await plain.dispose();
        const diff = maxAbsDiff(withGraph, withoutGraph);
        assert(diff === 0, `graph replay differs from launches by ${diff}`);
      } finally {
        delete process.env["BITNET_CUDA_GRAPHS"];
      }
      return {};
    },
  );

  await check(`${name}: logits against the host twins and the CPU backend`, async () => {
    const model = await compiled(name);
    const ours = await logitsBatched(model, LONG_PROMPT);
    await model.dispose();
    const host = await new CudaBackend({ execution: "host" }).compile(
      await readModelDescription(await fixture(name)),
      { contextLength: 64 },
    );
    const twins = await logitsBatched(host, LONG_PROMPT);
    await host.dispose();
    const cpu = await loadModel(await fixture(name), { backend: "cpu", contextLength: 64 });
    const theirs = await logitsBatched(cpu, LONG_PROMPT);
    await cpu.dispose();
    const vocab = ours.length / LONG_PROMPT.length;
    let top1 = 0;
    for (let t = 0; t < LONG_PROMPT.length; t++) {
      const row = (x: Float32Array) => x.subarray(t * vocab, (t + 1) * vocab);
      top1 += argmax(row(ours)) === argmax(row(theirs)) ? 1 : 0;
    }
    const vsTwins = maxAbsDiff(ours, twins);
    const vsCpu = maxAbsDiff(ours, theirs);
    assert(vsCpu < 1e-4, `max |Δ| against the CPU backend ${vsCpu}`);
    assert(
      top1 === LONG_PROMPT.length,
      `top-1 agrees at ${top1} of ${LONG_PROMPT.length} positions`,
    );
    return {
      maxAbsDiffVsHostTwins: vsTwins,
      maxAbsDiffVsCpu: vsCpu,
      top1Agreement: top1 / LONG_PROMPT.length,
    };
  });
}

if (!quick) {
  await check("golden greedy tokens", async () => {
    const golden = JSON.parse(
      fs.readFileSync(path.resolve("fixtures/golden-greedy.json"), "utf8"),
    ) as {
      models: Record<string, Record<string, number[]>>;
    };
    for (const name of TINY) {
      const model = await compiled(name);
      const tokenizer = Tokenizer.fromGguf(model.description.file.metadata);
      for (const [prompt, expected] of Object.entries(golden.models[name]!)) {
        const tokens = await greedyTokens(model, tokenizer.encode(prompt), expected.length);
        assert(
          JSON.stringify(tokens) === JSON.stringify(expected),
          `${name} "${prompt}": ${tokens} ≠ ${expected}`,
        );
      }
      await model.dispose();
    }
    return {};
  });

  await check(
    "bitnet serve --backend cuda: health, one greedy completion streamed and not, 64 requests at once",
    async () => {
      const server = await startServer({
        model: await fixture("tiny-i2s"),
        backend: "cuda",
        backendOptions: { cuda: { execution } },
        host: "127.0.0.1",
        port: 0,
        parallel: 8,
        maxQueue: 128,
        contextLength: 256,
        webUi: false,
        onLog: () => {},
      });
      try {
        await server.ready;
        const health = await fetch(`${server.url}/health`);
        assert(health.status === 200, `/health answered ${health.status}`);
        const complete = async (stream: boolean, prompt = "Once upon a time") => {
          const response = await fetch(`${server.url}/v1/completions`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({
              prompt,
              max_tokens: 24,
              temperature: 0,
              ignore_eos: true,
              stream,
            }),
          });
          assert(response.status === 200, `/v1/completions answered ${response.status}`);
          if (!stream) {
            const json = (await response.json()) as {
              choices: { text: string }[];
              usage: { completion_tokens: number };
            };
            return { text: json.choices[0]!.text, tokens: json.usage.completion_tokens };
          }
          let text = "";
          let done = false;
          for (const line of (await response.text()).split("\n")) {
            if (line === "data: [DONE]") {
              done = true;
            } else if (line.startsWith("data: ")) {
              text += (JSON.parse(line.slice(6)) as { choices: { text: string }[] }).choices[0]!
                .text;
            }
          }
          assert(done, "the stream did not end with [DONE]");
          return { text, tokens: -1 };
        };
        const plain = await complete(false);
        const streamed = await complete(true);
        assert(plain.tokens === 24, `${plain.tokens} tokens instead of 24`);
        assert(plain.text === streamed.text, `streamed "${streamed.text}" ≠ "${plain.text}"`);
        // 64 requests at once (8 generate together, the rest queue): every one answered.
        const started = performance.now();
        const replies = await Promise.all(
          Array.from({ length: 64 }, (_, i) => complete(i % 2 === 0, `Request ${i} says`)),
        );
        const seconds = (performance.now() - started) / 1000;
        const tokens = replies.reduce((n, r) => n + (r.tokens > 0 ? r.tokens : 24), 0);
        return {
          greedyText: plain.text,
          requests: replies.length,
          seconds,
          requestsPerSecond: replies.length / seconds,
          completionTokensPerSecond: tokens / seconds,
        };
      } finally {
        await server.close();
      }
    },
  );
}

if (!hostOnly && !quick) {
  const bench: Record<string, unknown> = {};
  summary.bench = bench;
  await check(
    "bench-i2s: load, pp512, tg128, aggregate decode at 8 and 64 sequences, memory, bound",
    async () => {
      const t0 = Date.now();
      const file = await fixture("bench-i2s");
      bench["fixtureMs"] = Date.now() - t0;
      const t1 = Date.now();
      const model = await new CudaBackend({ maxBatch: 512 }).compile(
        await readModelDescription(file),
        {
          contextLength: 1024,
        },
      );
      bench["loadMs"] = Date.now() - t1;
      const hp = model.description.hparams;
      const tokens = (n: number, seed: number) =>
        Array.from({ length: n }, (_, i) => 1000 + ((i * 7919 + seed) % (hp.vocabSize - 2000)));
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      // Warm-up.
      let seq = model.createSequence();
      await model.step([{ sequence: seq, tokens: tokens(32, 1), logits: "last" }]);
      model.freeSequence(seq);
      const pp: number[] = [];
      for (let r = 0; r < 3; r++) {
        seq = model.createSequence();
        const s = performance.now();
        await model.step([{ sequence: seq, tokens: tokens(512, r), logits: "last" }]);
        pp.push((512 * 1000) / (performance.now() - s));
        model.freeSequence(seq);
      }
      bench["pp512"] = median(pp);
      const tg: number[] = [];
      for (let r = 0; r < 3; r++) {
        seq = model.createSequence();
        await model.step([{ sequence: seq, tokens: [128000], reduce: "argmax" }]);
        const s = performance.now();
        for (let i = 0; i < 128; i++) {
          await model.step([{ sequence: seq, tokens: [1000 + i], reduce: "argmax" }]);
        }
        tg.push((128 * 1000) / (performance.now() - s));
        model.freeSequence(seq);
      }
      bench["tg128"] = median(tg);
      for (const n of [8, 64]) {
        const seqs = Array.from({ length: n }, () => model.createSequence());
        await model.step(
          seqs.map((sequence, i) => ({
            sequence,
            tokens: [128000, 1000 + i],
            reduce: "argmax" as const,
          })),
        );
        const steps = 32;
        const s = performance.now();
        for (let i = 0; i < steps; i++) {
          await model.step(
            seqs.map((sequence, j) => ({
              sequence,
              tokens: [2000 + i + j],
              reduce: "argmax" as const,
            })),
          );
        }
        bench[`aggregate_tg_${n}`] = (n * steps * 1000) / (performance.now() - s);
        for (const sq of seqs) {
          model.freeSequence(sq);
        }
      }
      bench["memory"] = model.memory();
      await model.dispose();
      // The same decode without CUDA graphs (every kernel launched from the host), for the
      // launch overhead the graph saves.
      process.env["BITNET_CUDA_GRAPHS"] = "0";
      const plain = await new CudaBackend({ maxBatch: 8 }).compile(
        await readModelDescription(file),
        {
          contextLength: 256,
        },
      );
      seq = plain.createSequence();
      await plain.step([{ sequence: seq, tokens: [128000], reduce: "argmax" }]);
      const s0 = performance.now();
      for (let i = 0; i < 128; i++) {
        await plain.step([{ sequence: seq, tokens: [1000 + i], reduce: "argmax" }]);
      }
      bench["tg128_without_graphs"] = (128 * 1000) / (performance.now() - s0);
      await plain.dispose();
      delete process.env["BITNET_CUDA_GRAPHS"];
      const copy = kernels.copyBandwidth(1 << 30, 10);
      bench["copyGBs"] = copy.gbs;
      // Bytes a decoded token reads: every tensor of the file but the token embedding's unused rows
      // (the head reads the tied table whole).
      const description = await readModelDescription(file);
      let bytes = 0;
      for (const t of description.file.tensors) {
        bytes += t.byteSize;
      }
      bench["bytesPerToken"] = bytes;
      bench["boundTgTps"] = (copy.gbs * 1e9) / bytes;
      bench["tgFractionOfBound"] = (bench["tg128"] as number) / (bench["boundTgTps"] as number);
      return bench;
    },
  );

  await check(
    "kernel table: our ternary GEMV against cuBLAS bf16 GEMV on the 2B-4T shapes (one token)",
    () => {
      const rows = kernels.kernelTable();
      summary.kernels = rows;
      return rows;
    },
  );

  await check(
    "prompt kernels: dp4a passes against tensor-core tiles on the 2B-4T shapes (16 to 512 tokens)",
    () => {
      const table = [];
      for (const [rows, cols] of [
        [3840, 2560],
        [13824, 2560],
        [2560, 6912],
      ] as const) {
        for (const tokens of [16, 32, 64, 128, 512]) {
          const dp4a = kernels.timeI2sGemv(rows, cols, tokens, 10, "dp4a");
          const tc = kernels.timeI2sGemv(rows, cols, tokens, 10, "tensor-cores");
          table.push({
            rows,
            cols,
            tokens,
            dp4aUs: dp4a.ms * 1000,
            dp4aTops: dp4a.tops,
            tensorCoreUs: tc.ms * 1000,
            tensorCoreTops: tc.tops,
            speedup: dp4a.ms / tc.ms,
          });
        }
      }
      return table;
    },
  );
}

console.log(
  `${summary.checks.filter((c) => c.ok).length} passed, ${summary.checks.filter((c) => !c.ok).length} failed in ${((Date.now() - started) / 1000).toFixed(1)} s`,
);
save();
fs.rmSync(tmp, { recursive: true, force: true });
process.exit(summary.checks.every((c) => c.ok) ? 0 : 1);
