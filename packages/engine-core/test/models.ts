/** Fixture models for engine tests, generated once per test file into a temp folder. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { type FixturePreset, PRESETS, TINY_DIMS, writeFixture } from "@bitnet-ts/fixtures";

export const tmp: string = fs.mkdtempSync(path.join(os.tmpdir(), "engine-"));

/** A second tiny shape: 1 layer, 4 heads without GQA, other widths. */
export const MICRO: FixturePreset = {
  name: "micro-tq2",
  arch: "bitnet",
  weightType: "TQ2_0",
  vocab: "llama3",
  dims: { ...TINY_DIMS, nLayer: 1, nFf: 512, nHead: 4, nHeadKv: 4, contextLength: 256 },
  description: "micro test model",
};

export async function fixture(name: string): Promise<string> {
  const file = path.join(tmp, `${name}.gguf`);
  if (!fs.existsSync(file)) {
    const preset = name === MICRO.name ? MICRO : PRESETS[name];
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
