/** Test models: fixture presets generated once per test file into a temp folder. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { GgufWriter, readGgufFile } from "@bitnet-ts/gguf";

export const tmp: string = fs.mkdtempSync(path.join(os.tmpdir(), "tokenizers-"));

export async function fixture(name: "tiny-tq2" | "tiny-spm" | "tiny-i2s"): Promise<string> {
  const file = path.join(tmp, `${name}.gguf`);
  if (!fs.existsSync(file)) {
    await writeFixture(PRESETS[name]!, file);
  }
  return file;
}

/** tiny-tq2 without `tokenizer.ggml.pre`: what llama.cpp tokenizes with its default patterns. */
export async function fixtureWithoutPre(): Promise<string> {
  const out = path.join(tmp, "tiny-tq2-nopre.gguf");
  if (!fs.existsSync(out)) {
    const source = await readGgufFile(await fixture("tiny-tq2"), { tensorData: true });
    const w = new GgufWriter();
    w.setAll([...source.metadata].filter(([key]) => key !== "tokenizer.ggml.pre"));
    for (const t of source.tensors) {
      w.addTensor(t.name, t.type, t.shape, source.tensorData(t));
    }
    await w.writeFile(out);
  }
  return out;
}

export function corpus(): string[] {
  const file = path.resolve(import.meta.dirname, "../../../fixtures/tokenizer-corpus.jsonl");
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as string);
}

export function cleanup(): void {
  fs.rmSync(tmp, { recursive: true, force: true });
}
