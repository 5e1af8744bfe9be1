#!/usr/bin/env node
// npm install hook: use a prebuilt binary when one matches, else compile. A failed compile does
// not fail the install: engine-core falls back to the reference backend with a warning, and
// build-native.mjs leaves build/native-build-failure.json saying why (read by src/loader.ts).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

const root = path.resolve(import.meta.dirname, "..");
const failureFile = path.join(root, "build", "native-build-failure.json");
const prebuild = path.join(
  root,
  "prebuilds",
  `${process.platform}-${process.arch}`,
  "bitnet_kernels_cpu.node",
);
if (fs.existsSync(prebuild)) {
  fs.rmSync(failureFile, { force: true }); // an earlier failed build no longer matters
  console.log(`kernels-cpu: using prebuilt ${path.relative(root, prebuild)}`);
  process.exit(0);
}
const r = spawnSync(process.execPath, [path.join(root, "scripts/build-native.mjs"), "--install"], {
  stdio: "inherit",
});
if (r.status !== 0) {
  let why = "";
  try {
    why = `: ${JSON.parse(fs.readFileSync(failureFile, "utf8")).error}`;
  } catch {
    // no record: build-native.mjs could not write one
  }
  console.warn(
    `kernels-cpu: could not compile the native addon${why}\n` +
      `bitnet-ts will run on the (slow) reference backend; details in ${path.relative(process.cwd(), failureFile)}.`,
  );
}
process.exit(0);
