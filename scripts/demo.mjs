#!/usr/bin/env node
// The README's main job: generate text with the embedded default model (a synthetic demo model
// generated on first use into the cache folder; no download). Extra arguments go to `bitnet run`.
import { spawnSync } from "node:child_process";

const args = process.argv.slice(2);
const run = spawnSync(
  process.execPath,
  [
    "apps/cli/dist/bitnet.js",
    "run",
    "-p",
    "Once upon a time, there was a little",
    "-n",
    "32",
    "--temp",
    "0",
    ...args,
  ],
  { stdio: "inherit" },
);
process.exit(run.status ?? 1);
