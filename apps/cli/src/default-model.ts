/**
 * The embedded default model: when `run`/`chat` get no `-m`, a synthetic demo model is
 * generated once into the cache folder and used. It has random weights: its output is not
 * language, but it exercises the whole real code path offline.
 *
 * The demo model is defined in @bitnet-ts/fixtures/demo (a light module), apart from the test
 * presets. The bytes come from the deterministic fixture generator (@bitnet-ts/fixtures),
 * imported only on first use, when the file is generated.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DEMO_MODEL, DEMO_SEED } from "@bitnet-ts/fixtures/demo";

export { DEMO_MODEL };

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
