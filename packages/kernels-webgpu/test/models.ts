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

const backends = new Map<string, Promise<WebGpuBackend>>();

/**
 * The backend (one device per set of options) every test of a file shares: creating devices on
 * lavapipe is slow. A missing adapter fails the test with the reason.
 */
export function backend(options: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
  const key = JSON.stringify(options);
  let be = backends.get(key);
  if (be === undefined) {
    be = WebGpuBackend.create(options).catch((error: unknown) => {
      throw new Error(
        `no WebGPU adapter: ${(error as Error).message}\nOn Linux without a GPU driver, run tools/lavapipe/setup.sh (the test runner does) and source .cache/lavapipe/env.sh.`,
        { cause: error },
      );
    });
    backends.set(key, be);
  }
  return be;
}

/** The fixture compiled on the WebGPU backend (with these backend options). */
export async function gpuModel(
  name: string,
  contextLength = 64,
  options: WebGpuBackendOptions = {},
): Promise<WebGpuModel> {
  const description = await readModelDescription(await fixture(name));
  return (await backend(options)).compile(description, { contextLength });
}

export async function cleanup(): Promise<void> {
  fs.rmSync(tmp, { recursive: true, force: true });
  for (const be of backends.values()) {
    (await be.catch(() => undefined))?.release();
  }
  backends.clear();
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
