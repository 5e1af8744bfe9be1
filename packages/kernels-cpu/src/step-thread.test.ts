/**
 * Every model runs its steps on its own thread (native/job_thread.h), which settles each step's
 * promise through a thread-safe function. These tests hold that thread's lifecycle: a native
 * failure rejects and the next step still runs, steps queued without waiting settle in order with
 * the bits of steps run one by one, an idle model never keeps a process alive, and a process or
 * a worker thread that ends while a step runs lets it finish and ends cleanly.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { sameBits } from "@bitnet-ts/engine-core/testing";
import { afterAll, describe, expect, it } from "vitest";
import { cleanup, cpuModel, fixture, SLOW_TEST_MS, tmp } from "../test/models";

afterAll(cleanup);

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const builtBackend = path.join(packageRoot, "dist", "index.js");
const builtEngine = path.join(packageRoot, "..", "engine-core", "dist", "index.js");
const built = fs.existsSync(builtBackend) && fs.existsSync(builtEngine);
if (!built) {
  console.warn("skipping the child-process step thread tests: run `pnpm build` first (no dist/)");
}

/** One native step of `tokens` on sequence `seq` from position `from`, logits for the last token. */
function nativeStep(
  model: Awaited<ReturnType<typeof cpuModel>>,
  seq: number,
  tokens: number[],
  from: number,
  logits: Float32Array,
): Promise<void> {
  const want = new Uint8Array(tokens.length);
  want[tokens.length - 1] = 1;
  return model.native.step(
    Int32Array.from(tokens),
    new Int32Array(tokens.length).fill(seq),
    Int32Array.from(tokens, (_, i) => from + i),
    want,
    logits,
    new Int32Array(0),
    [],
  );
}

/** Runs an ES module script in a fresh Node.js process; its exit status, signal and output. */
function runScript(name: string, source: string, timeoutMs = 60_000, env: NodeJS.ProcessEnv = {}) {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, source);
  const r = spawnSync(process.execPath, [file], {
    encoding: "utf8",
    timeout: timeoutMs,
    env: { ...process.env, ...env },
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, error: r.error };
}

/** Script lines importing the built packages, and lines that compile tiny-i2s as `model`. */
const IMPORTS = `import { CpuBackend } from ${JSON.stringify(pathToFileURL(builtBackend).href)};
import { readModelDescription } from ${JSON.stringify(pathToFileURL(builtEngine).href)};
`;
async function loadModelLines(): Promise<string> {
  const file = await fixture("tiny-i2s");
  return `const description = await readModelDescription(${JSON.stringify(file)}, { tensorData: false });
const model = await new CpuBackend({ threads: 2 }).compile(description, { contextLength: 256 });
const prompt = Array.from({ length: 200 }, (_, i) => 1 + ((i * 7919) % 32000));
`;
}

describe("the step thread", () => {
  it("rejects a step the native code refuses, with its message, and runs the next one", {
    timeout: SLOW_TEST_MS,
  }, async () => {
    const model = await cpuModel("tiny-i2s", { threads: 2 });
    const vocab = model.description.hparams.vocabSize;
    // Sequence 777 was never created natively (the TypeScript layer would have refused it).
    await expect(nativeStep(model, 777, [1, 2], 0, new Float32Array(vocab))).rejects.toThrow(
      /unknown sequence/,
    );
    const seq = model.createSequence();
    const { runs } = await model.step([{ sequence: seq, tokens: [1, 2, 3] }]);
    expect(runs[0]!.logits.length).toBe(vocab);
    await model.dispose();
  });

  it("settles steps queued without waiting in order, with the bits of steps awaited one by one", {
    timeout: SLOW_TEST_MS,
  }, async () => {
    const model = await cpuModel("tiny-i2s", { threads: 2 });
    const vocab = model.description.hparams.vocabSize;
    const prompts = [
      [1, 2, 3, 4],
      [500, 600],
      [7, 8, 9, 10, 11, 12, 13],
    ];
    const ids = [11, 12, 13];
    for (const id of ids) {
      model.native.createSequence(id);
    }
    const queued = prompts.map(() => new Float32Array(vocab));
    const order: number[] = [];
    await Promise.all(
      prompts.map((tokens, i) =>
        nativeStep(model, ids[i]!, tokens, 0, queued[i]!).then(() => order.push(i)),
      ),
    );
    expect(order).toEqual([0, 1, 2]);
    for (let i = 0; i < prompts.length; i++) {
      model.native.freeSequence(ids[i]!);
      model.native.createSequence(ids[i]!);
      const alone = new Float32Array(vocab);
      await nativeStep(model, ids[i]!, prompts[i]!, 0, alone);
      expect(sameBits(alone, queued[i]!)).toBe(true);
    }
    await model.dispose();
  });

  it.skipIf(!built)(
    "leaves libuv's thread pool free while a step runs (file reads do not wait for it)",
    {
      timeout: SLOW_TEST_MS,
    },
    async () => {
      // One libuv thread: a step that held it (as an AsyncWorker would) would make the stat wait
      // until the step settled.
      const r = runScript(
        "pool-free.mjs",
        `import * as fs from "node:fs";
${IMPORTS}${await loadModelLines()}
const seq = model.createSequence();
const events = [];
const step = model.step([{ sequence: seq, tokens: prompt }]).then(() => events.push("step"));
await new Promise((resolve) => setImmediate(resolve)); // the step is in native code by now
await fs.promises.stat(${JSON.stringify(builtBackend)}).then(() => events.push("stat"));
await step;
console.log(events.join(","));
`,
        60_000,
        { UV_THREADPOOL_SIZE: "1" },
      );
      expect(r.stderr).toBe("");
      expect(r.stdout.trim()).toBe("stat,step");
    },
  );

  it.skipIf(!built)(
    "lets a process with an idle, undisposed model exit by itself",
    {
      timeout: SLOW_TEST_MS,
    },
    async () => {
      const r = runScript(
        "idle-exit.mjs",
        `${IMPORTS}${await loadModelLines()}
const seq = model.createSequence();
await model.step([{ sequence: seq, tokens: prompt.slice(0, 8) }]);
console.log("stepped");
`,
        30_000,
      );
      expect(r.error).toBeUndefined(); // a hang would time out (ETIMEDOUT)
      expect(r.stdout).toContain("stepped");
      expect({ status: r.status, signal: r.signal }).toEqual({ status: 0, signal: null });
    },
  );

  it.skipIf(!built)(
    "finishes a step in flight when the process exits, and crashes nothing",
    {
      timeout: SLOW_TEST_MS,
    },
    async () => {
      const r = runScript(
        "exit-mid-step.mjs",
        `${IMPORTS}${await loadModelLines()}
const seq = model.createSequence();
model.step([{ sequence: seq, tokens: prompt }]);
console.log("posted");
process.exit(0);
`,
      );
      expect(r.stdout).toContain("posted");
      expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({
        status: 0,
        signal: null,
        stderr: "",
      });
    },
  );

  it.skipIf(!built)(
    "lets a worker thread that runs a model be terminated mid-step",
    {
      timeout: SLOW_TEST_MS,
    },
    async () => {
      const r = runScript(
        "worker-mid-step.mjs",
        `import { Worker, isMainThread, parentPort } from "node:worker_threads";
${IMPORTS}
if (isMainThread) {
  const worker = new Worker(new URL(import.meta.url));
  worker.on("message", async (m) => {
    if (m !== "posted") return;
    await worker.terminate();
    console.log("terminated");
  });
} else {
${await loadModelLines()}
  const seq = model.createSequence();
  model.step([{ sequence: seq, tokens: prompt }]);
  parentPort.postMessage("posted");
}
`,
      );
      expect(r.stdout).toContain("terminated");
      expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({
        status: 0,
        signal: null,
        stderr: "",
      });
    },
  );
});
