/** Fixture models for the native backend's tests, generated once per test file into a temp folder. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { readModelDescription } from "@bitnet-ts/engine-core";
import {
  BENCH_DIMS,
  type FixturePreset,
  PRESETS,
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
  "layer-2b4t-i2s": {
    ...PRESETS["bench-i2s"]!,
    name: "layer-2b4t-i2s",
    dims: { ...BENCH_DIMS, nLayer: 1 },
    description: "one layer of the 2B-4T shape, I2_S",
  },
};

export async function fixture(name: string): Promise<string> {
  const file = path.join(tmp, `${name}.gguf`);
  if (!fs.existsSync(file)) {
    const preset = PRESETS[name] ?? TEST_PRESETS[name];
    if (preset === undefined) {
      throw new Error(`unknown fixture ${name}`);
    }
    await writeFixture(preset, file);
  }
  return file;
}

export function cleanup(): void {
  fs.rmSync(tmp, { recursive: true, force: true });
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
  const file = path.join(tmp, `${name}-${type.toLowerCase()}.gguf`);
  if (!fs.existsSync(file)) {
    await writeWithEmbeddingType(await fixture(name), file, type);
  }
  return file;
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
