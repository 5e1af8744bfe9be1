import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";

export const tmp: string = fs.mkdtempSync(path.join(os.tmpdir(), "generation-"));

export async function fixture(name: string): Promise<string> {
  const file = path.join(tmp, `${name}.gguf`);
  if (!fs.existsSync(file)) {
    await writeFixture(PRESETS[name]!, file);
  }
  return file;
}

export function cleanup(): void {
  fs.rmSync(tmp, { recursive: true, force: true });
}
