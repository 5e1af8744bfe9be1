/**
 * Fixture models and one shared WebGPU device for this package's tests. The device must come up:
 * in CI the adapter is Mesa's lavapipe (tools/lavapipe/setup.sh), and a missing adapter fails the
 * tests with the reason instead of skipping them.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { readModelDescription } from "@bitnet-ts/engine-core";
import {
  type EmbeddingType,
  PRESETS,
  writeFixture,
  writeWithEmbeddingType,
} from "@bitnet-ts/fixtures";
import { WebGpuBackend, type WebGpuBackendOptions, type WebGpuModel } from "../src/backend";

export const tmp: string = fs.mkdtempSync(path.join(os.tmpdir(), "kernels-webgpu-"));

export async function fixture(name: string): Promise<string> {
  const file = path.join(tmp, `${name}.gguf`);
  if (!fs.existsSync(file)) {
    const preset = PRESETS[name];
    if (preset === undefined) {
      throw new Error(`unknown fixture ${name}`);
    }
    await writeFixture(preset, file);
  }
  return file;
}

let shared: Promise<WebGpuBackend> | undefined;

/** The backend every test of a file shares (one device: creating devices on lavapipe is slow). */
export function backend(): Promise<WebGpuBackend> {
  shared ??= WebGpuBackend.create().catch((error: unknown) => {
    throw new Error(
      `no WebGPU adapter: ${(error as Error).message}\nOn Linux without a GPU driver, run tools/lavapipe/setup.sh (the test runner does) and source .cache/lavapipe/env.sh.`,
      { cause: error },
    );
  });
  return shared;
}

/** The fixture compiled on the WebGPU backend (a backend with other options when given). */
export async function gpuModel(
  name: string,
  contextLength = 64,
  options?: WebGpuBackendOptions,
): Promise<WebGpuModel> {
  const description = await readModelDescription(await fixture(name));
  const be = options === undefined ? await backend() : await WebGpuBackend.create(options);
  return be.compile(description, { contextLength });
}

export async function cleanup(): Promise<void> {
  fs.rmSync(tmp, { recursive: true, force: true });
  const be = await shared?.catch(() => undefined);
  be?.release();
  shared = undefined;
}

/** A 20-token prompt in the fixtures' LLaMA-3 vocabulary. */
export const LONG_PROMPT: readonly number[] = [
  128000, 791, 6864, 315, 9822, 374, 12366, 13, 578, 4062, 14198, 39935, 35308, 927, 279, 16053,
  5679, 13, 358, 1093,
];

/** A copy of a fixture whose tied embedding / output head is stored as `type` instead of F16. */
export async function withEmbedding(name: string, type: EmbeddingType): Promise<string> {
  const file = path.join(tmp, `${name}-${type.toLowerCase()}.gguf`);
  if (!fs.existsSync(file)) {
    await writeWithEmbeddingType(await fixture(name), file, type);
  }
  return file;
}
