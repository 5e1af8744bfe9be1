/**
 * Fixture models for the native backend's tests, generated once per test file into a temp folder
 * (or once per suite run into BITNET_TEST_CACHE, see there), and the reference backend's logits
 * and captures.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { threadId } from "node:worker_threads";
import { loadModel, readModelDescription } from "@bitnet-ts/engine-core";
import {
  type CaptureStore,
  decodeStepOutputs,
  encodeStepOutputs,
  logitsBatched,
  logitsOneByOne,
} from "@bitnet-ts/engine-core/testing";
import {
  BENCH_DIMS,
  type FixturePreset,
  PRESETS,
  TINY_DIMS,
  writeFixture,
  writeWithEmbeddingType,
} from "@bitnet-ts/fixtures";
import { CpuBackend, type CpuBackendOptions, type CpuModel } from "../src/backend";

export const tmp: string = fs.mkdtempSync(path.join(os.tmpdir(), "kernels-cpu-"));

/**
 * The time limit of a test that runs real forward passes: 60 s, times BITNET_TEST_TIME_SCALE
 * where a run is known to be slow (tools/arm64 sets it under qemu-user emulation).
 */
export const SLOW_TEST_MS: number =
  60_000 * Math.max(1, Number(process.env["BITNET_TEST_TIME_SCALE"] ?? "1") || 1);

/**
 * Presets only these tests use, generated like the committed ones. "layer-2b4t-i2s": one layer of
 * the microsoft/bitnet-b1.58-2B-4T shape (bench-i2s with nLayer 1): hidden 2560, 20 query and 5
 * KV heads of 128, FFN 6912, relu², I2_S, the LLaMA-3 vocabulary (128256; a ~670 MB file).
 */
export const TEST_PRESETS: Readonly<Record<string, FixturePreset>> = {
  // Heads 128 wide (the 2B-4T's) in a small model: 8 query heads on 2 KV heads, width 1024, the
  // LLaMA-2 vocabulary (32000) so the head stays small (attention-split.test.ts).
  "heads128-tq2": {
    ...PRESETS["tiny-spm"]!,
    name: "heads128-tq2",
    dims: { ...TINY_DIMS, nEmbd: 1024, nHead: 8, nHeadKv: 2 },
    description: "tiny layers with 128-wide heads (8 on 2 KV heads), TQ2_0, LLaMA-2 vocabulary",
  },
  "layer-2b4t-i2s": {
    ...PRESETS["bench-i2s"]!,
    name: "layer-2b4t-i2s",
    dims: { ...BENCH_DIMS, nLayer: 1 },
    description: "one layer of the 2B-4T shape, I2_S",
  },
};

/**
 * A folder that keeps generated fixtures, the reference backend's logits and its op-by-op
 * captures (captureStore) for the rest of one suite run: BITNET_TEST_CACHE, which scripts/test.mjs empties at the start and passes to the
 * native run and then to the arm64 run under qemu-user (tools/arm64), where generating a fixture
 * or running the TypeScript reference takes 10-20× as long as natively (a Q6_K head: 114 s
 * against 6). Both are deterministic, so what the cache holds is what the test would compute.
 * Unset, each test file makes its own in its temp folder and computes every reference.
 */
const SHARED: string | undefined = process.env["BITNET_TEST_CACHE"] || undefined;

/** dir/name, made by `make` unless it exists (written aside, then renamed: two test files may make it at once). */
async function made(
  dir: string,
  name: string,
  make: (file: string) => Promise<void>,
): Promise<string> {
  const file = path.join(dir, name);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(dir, { recursive: true });
    const partial = path.join(dir, `.${process.pid}-${threadId}-${name}`);
    await make(partial);
    fs.renameSync(partial, file);
  }
  return file;
}

const fixtureDir = (): string => (SHARED === undefined ? tmp : path.join(SHARED, "fixtures"));

export async function fixture(name: string): Promise<string> {
  const preset = PRESETS[name] ?? TEST_PRESETS[name];
  if (preset === undefined) {
    throw new Error(`unknown fixture ${name}`);
  }
  return made(fixtureDir(), `${name}.gguf`, (file) => writeFixture(preset, file));
}

export function cleanup(): void {
  fs.rmSync(tmp, { recursive: true, force: true });
}

/**
 * Runs `load` with environment variable `name` set as given (undefined: unset), restoring it
 * after: for settings the native model reads as it loads (BITNET_DECODE_FUSE,
 * BITNET_ATTENTION_SPLIT).
 */
export async function withEnv<T>(
  name: string,
  value: string | undefined,
  load: () => Promise<T>,
): Promise<T> {
  const saved = process.env[name];
  if (value === undefined) {
    delete process.env[name];
  } else {
    process.env[name] = value;
  }
  try {
    return await load();
  } finally {
    if (saved === undefined) {
      delete process.env[name];
    } else {
      process.env[name] = saved;
    }
  }
}

/** The fixture compiled on the native backend. */
export async function cpuModel(
  name: string,
  options: CpuBackendOptions = {},
  contextLength = 64,
): Promise<CpuModel> {
  const description = await readModelDescription(await fixture(name), { tensorData: false });
  return new CpuBackend(options).compile(description, { contextLength });
}

/** A 20-token prompt in the fixtures' LLaMA-3 vocabulary: long enough for the 16-token GEMM tiles. */
export const LONG_PROMPT: readonly number[] = [
  128000, 791, 6864, 315, 9822, 374, 12366, 13, 578, 4062, 14198, 39935, 35308, 927, 279, 16053,
  5679, 13, 358, 1093,
];

/**
 * A copy of a fixture whose tied embedding / output head is stored as `type` instead of F16
 * (values converted from the F16 originals), to exercise the other head and lookup kernels.
 */
export async function withEmbedding(
  name: string,
  type: "F32" | "BF16" | "Q8_0" | "Q6_K",
): Promise<string> {
  const source = await fixture(name);
  return made(fixtureDir(), `${name}-${type.toLowerCase()}.gguf`, (file) =>
    writeWithEmbeddingType(source, file, type),
  );
}

/**
 * The reference backend's logits for `tokens` on `file` (all positions, as engine-core's
 * logitsBatched, or step by step as logitsOneByOne), kept in BITNET_TEST_CACHE when it is set.
 */
export async function referenceLogits(
  file: string,
  tokens: readonly number[],
  options: { contextLength?: number; oneByOne?: boolean } = {},
): Promise<Float32Array> {
  const contextLength = options.contextLength ?? 64;
  const oneByOne = options.oneByOne ?? false;
  const compute = async (): Promise<Float32Array> => {
    const reference = await loadModel(file, { backend: "reference", contextLength });
    try {
      return oneByOne
        ? await logitsOneByOne(reference, tokens)
        : await logitsBatched(reference, tokens);
    } finally {
      await reference.dispose();
    }
  };
  if (SHARED === undefined) {
    return compute();
  }
  // The file by its path, size and time: cached fixtures are made once per run, and a temp
  // folder's files never share a path with another test file's.
  const { size, mtimeMs } = fs.statSync(file);
  const key = createHash("sha256")
    .update(JSON.stringify([path.resolve(file), size, mtimeMs, contextLength, oneByOne, tokens]))
    .digest("hex")
    .slice(0, 32);
  let logits: Float32Array | undefined;
  const cached = await made(path.join(SHARED, "reference"), `${key}.f32`, async (partial) => {
    logits = await compute();
    fs.writeFileSync(partial, new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength));
  });
  if (logits !== undefined) {
    return logits;
  }
  const bytes = fs.readFileSync(cached);
  return new Float32Array(
    bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
  );
}

/** The index of the largest value (the first on ties): a greedy pick. */
export function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) {
    if (row[i]! > row[best]!) {
      best = i;
    }
  }
  return best;
}

/**
 * Where describeOpByOp keeps the reference's capture of the fixture `name` (compiled with
 * `contextLength`) over `steps`: a file in BITNET_TEST_CACHE, or nothing when that is unset.
 * Under qemu the capture took about a minute per model.
 */
export function captureStore(
  name: string,
  steps: unknown,
  contextLength = 64,
): CaptureStore | undefined {
  if (SHARED === undefined) {
    return undefined;
  }
  const dir = path.join(SHARED, "capture");
  const key = `${createHash("sha256")
    .update(JSON.stringify([name, contextLength, steps]))
    .digest("hex")
    .slice(0, 32)}.bin`;
  return {
    load: async () => {
      const file = path.join(dir, key);
      return fs.existsSync(file) ? decodeStepOutputs(fs.readFileSync(file)) : undefined;
    },
    save: async (outputs) => {
      await made(dir, key, async (partial) =>
        fs.writeFileSync(partial, encodeStepOutputs(outputs)),
      );
    },
  };
}
