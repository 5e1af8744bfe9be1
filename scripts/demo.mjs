#!/usr/bin/env node
// The README's main job: generate the tiny demo model (once, into .cache/models) and show it
// with `bitnet inspect`. Text generation joins here when the engine lands.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";

const model = ".cache/models/tiny-i2s.gguf";
if (!fs.existsSync(model)) {
  fs.mkdirSync(".cache/models", { recursive: true });
  const gen = spawnSync(process.execPath, ["tools/fixtures/dist/cli.js", "tiny-i2s", model], {
    stdio: "inherit",
  });
  if (gen.status !== 0) {
    process.exit(gen.status ?? 1);
  }
}
const run = spawnSync(process.execPath, ["apps/cli/dist/bitnet.js", "inspect", model], {
  stdio: "inherit",
});
process.exit(run.status ?? 1);
