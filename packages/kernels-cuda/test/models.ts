/**
 * Fixture models for this package's tests, compiled on the CUDA backend: on the GPU where there
 * is one ("device"), and everywhere through the kernels' host twins ("host").
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { readModelDescription } from "@bitnet-ts/engine-core";
import { type FixturePreset, PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { cudaAvailability } from "../src/availability";
import { CudaBackend, type CudaModel } from "../src/backend";

export const tmp: string = fs.mkdtempSync(path.join(os.tmpdir(), "kernels-cuda-"));

/**
 * Presets only these tests use. "tiny-tq2-mha": tiny-tq2 with as many KV heads as query heads (as
 * the bitnet_b1_58 models llama.cpp runs have), so q and k are as wide and may share buffers.
 */
const TEST_PRESETS: Readonly<Record<string, FixturePreset>> = {
  "tiny-tq2-mha": {
    ...PRESETS["tiny-tq2"]!,
    name: "tiny-tq2-mha",
    dims: { ...PRESETS["tiny-tq2"]!.dims, nHeadKv: PRESETS["tiny-tq2"]!.dims.nHead },
    description: "tiny-tq2 with one KV head per query head",
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

/** Why the GPU tests are skipped here (false: a CUDA GPU is present). */
export const NO_GPU: string | false = (() => {
  const a = cudaAvailability();
  return a.available ? false : a.reason;
})();

/** Why the host-twin tests are skipped here (false: the addon loaded; it always builds with g++). */
export const NO_ADDON: string | false = (() => {
  const a = cudaAvailability();
  return a.available || a.addonLoaded ? false : a.reason;
})();

/** The test's title, naming the reason where it is skipped. */
export function titled(title: string, skip: string | false): string {
  return skip === false ? title : `${title} (skipped: ${skip})`;
}

/** The fixture compiled on the CUDA backend, on the GPU or through the host twins. */
export async function cudaModel(
  name: string,
  execution: "device" | "host",
  contextLength = 64,
  maxBatch?: number,
): Promise<CudaModel> {
  const description = await readModelDescription(await fixture(name));
  const backend = new CudaBackend({ execution, ...(maxBatch === undefined ? {} : { maxBatch }) });
  return backend.compile(description, { contextLength });
}

export function cleanup(): void {
  fs.rmSync(tmp, { recursive: true, force: true });
}

/** A 20-token prompt in the fixtures' LLaMA-3 vocabulary. */
export const LONG_PROMPT: readonly number[] = [
  128000, 791, 6864, 315, 9822, 374, 12366, 13, 578, 4062, 14198, 39935, 35308, 927, 279, 16053,
  5679, 13, 358, 1093,
];
