#!/usr/bin/env node
// npm install hook: use the prebuilt addon for this platform and architecture when it loads here,
// else compile. "Loads here" is tried, not guessed: a child Node process requires the prebuild and
// checks its ABI, which covers the C library (a glibc prebuild on musl), its version and the CPU
// architecture at once. A build from source is asked for with `npm install --build-from-source`
// (npm_config_build_from_source) or BITNET_BUILD_FROM_SOURCE=1.
//
// A failed compile does not fail the install: engine-core falls back to the reference backend
// with a warning, and build-native.mjs leaves build/native-build-failure.json saying why (read by
// src/loader.ts).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

const root = path.resolve(import.meta.dirname, "..");
const failureFile = path.join(root, "build", "native-build-failure.json");
const target = `${process.platform}-${process.arch}`;
const prebuild = path.join(root, "prebuilds", target, "bitnet_kernels_cpu.node");
const truthy = (v) => v !== undefined && v !== "" && v !== "0" && v !== "false";
const fromSource =
  truthy(process.env.npm_config_build_from_source) || truthy(process.env.BITNET_BUILD_FROM_SOURCE);

/** Why the prebuild cannot be used here, or undefined when it loads with the expected ABI. */
function prebuildProblem() {
  if (!fs.existsSync(prebuild)) {
    return `no prebuild for ${target} in this package`;
  }
  const abi = /abiVersion",\s*Napi::Number::New\(env,\s*(\d+)\)/.exec(
    fs.readFileSync(path.join(root, "native", "addon.cc"), "utf8"),
  )?.[1];
  const probe = spawnSync(
    process.execPath,
    ["-e", "process.stdout.write(String(require(process.argv[1]).abiVersion))", prebuild],
    { encoding: "utf8", timeout: 60_000 },
  );
  if (probe.status !== 0) {
    const why = (probe.stderr || probe.error?.message || "")
      .split("\n")
      .find((l) => /Error/.test(l));
    return `the ${target} prebuild does not load here (${why?.trim() ?? `exit ${probe.status}`})`;
  }
  if (abi !== undefined && probe.stdout.trim() !== abi) {
    return `the ${target} prebuild has ABI ${probe.stdout.trim()}, this package expects ${abi}`;
  }
  return undefined;
}

const problem = fromSource ? "a build from source was asked for" : prebuildProblem();
if (problem === undefined) {
  fs.rmSync(failureFile, { force: true }); // an earlier failed build no longer matters
  console.log(`kernels-cpu: using the prebuilt addon ${path.relative(root, prebuild)}`);
  process.exit(0);
}
console.log(`kernels-cpu: compiling the native addon (${problem})`);
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
