/**
 * The embedded default model: when `run`/`chat` get no `-m`, a synthetic demo model (the
 * tiny-i2s fixture preset) is generated once into the cache folder and used. It has random
 * weights: its output is not language, but it exercises the whole real code path offline.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";

export function cacheDir(): string {
  return (
    process.env["BITNET_CACHE_DIR"] ??
    path.join(process.env["XDG_CACHE_HOME"] ?? path.join(os.homedir(), ".cache"), "bitnet-ts")
  );
}

export async function defaultModelPath(log: (line: string) => void): Promise<string> {
  const file = path.join(cacheDir(), "models", "demo-tiny-i2s-seed1.gguf");
  if (!fs.existsSync(file)) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    log(`bitnet: generating the built-in demo model into ${file} (first use only)…`);
    await writeFixture(PRESETS["tiny-i2s"]!, file, { seed: 1 });
  }
  log(
    `bitnet: no -m given: using the built-in synthetic demo model (random weights, not a trained model): ${file}`,
  );
  return file;
}
