#!/usr/bin/env node
// Puts the built-in demo model (the CLI's default: a synthetic model generated deterministically
// by @bitnet-ts/fixtures, not committed) into public/models/default.gguf, so the static site can
// offer it without -m-like input. Skipped when it is already there.
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(here, "../public/models/default.gguf");
if (!fs.existsSync(out)) {
  const { DEMO_MODEL, DEMO_SEED, writeFixture } = await import("@bitnet-ts/fixtures");
  fs.mkdirSync(path.dirname(out), { recursive: true });
  await writeFixture(DEMO_MODEL, out, { seed: DEMO_SEED });
  console.log(`web: wrote the demo model to ${path.relative(process.cwd(), out)}`);
}
