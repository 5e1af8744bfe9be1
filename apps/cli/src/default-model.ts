/**
 * The embedded default model: when `run`/`chat` get no `-m`, a synthetic demo model is
 * generated once into the cache folder and used. It has random weights: its output is not
 * language, but it exercises the whole real code path offline.
 *
 * The demo model is defined here, not borrowed from the test presets: tests may reshape their
 * fixtures, while the demo's cached file name promises the same model on every machine. The
 * bytes come from the deterministic fixture generator (@bitnet-ts/fixtures), imported only on
 * first use, when the file is generated.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { FixturePreset } from "@bitnet-ts/fixtures";

/** The 2B-4T layout (bitnet.cpp) at a tiny size: 2 layers, width 256, GQA 8:2, I2_S. */
export const DEMO_MODEL: FixturePreset = {
  name: "demo-tiny-i2s",
  arch: "bitnet-b1.58",
  weightType: "I2_S",
  vocab: "llama3",
  dims: { nEmbd: 256, nLayer: 2, nFf: 768, nHead: 8, nHeadKv: 2, contextLength: 4096 },
  description: "the built-in synthetic demo model (random weights, not a trained model)",
};
const DEMO_SEED = 1;

export function cacheDir(): string {
  return (
    process.env["BITNET_CACHE_DIR"] ??
    path.join(process.env["XDG_CACHE_HOME"] ?? path.join(os.homedir(), ".cache"), "bitnet-ts")
  );
}

export async function defaultModelPath(log: (line: string) => void): Promise<string> {
  const file = path.join(cacheDir(), "models", `${DEMO_MODEL.name}-seed${DEMO_SEED}.gguf`);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    log(`bitnet: generating the built-in demo model into ${file} (first use only)…`);
    const { writeFixture } = await import("@bitnet-ts/fixtures");
    await writeFixture(DEMO_MODEL, file, { seed: DEMO_SEED });
  }
  log(
    `bitnet: no -m given: using the built-in synthetic demo model (random weights, not a trained model): ${file}`,
  );
  return file;
}
