#!/usr/bin/env node
// npm install hook: use a prebuilt binary when one matches, else compile. A failed compile does
// not fail the install: engine-core falls back to the reference backend with a warning.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

const root = path.resolve(import.meta.dirname, "..");
const prebuild = path.join(
  root,
  "prebuilds",
  `${process.platform}-${process.arch}`,
  "bitnet_kernels_cpu.node",
);
if (fs.existsSync(prebuild)) {
  console.log(`kernels-cpu: using prebuilt ${path.relative(root, prebuild)}`);
  process.exit(0);
}
const r = spawnSync(process.execPath, [path.join(root, "scripts/build-native.mjs")], {
  stdio: "inherit",
});
if (r.status !== 0) {
  console.warn(
    "kernels-cpu: could not compile the native addon; bitnet-ts will run on the (slow) reference backend.",
  );
}
process.exit(0);
