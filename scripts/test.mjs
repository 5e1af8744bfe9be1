#!/usr/bin/env node
// The whole test suite: build + typecheck (turbo), lint (biome), then every vitest project (on
// Linux x64 with apt-get, with lavapipe from tools/lavapipe/setup.sh for the WebGPU tests).
// Prints a final line "N passed, N failed, N skipped" (static checks count as one test each;
// skipped: tests registered but not run here, e.g. a kernel path this CPU lacks, each named with
// its reason).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const extra = process.argv.slice(2);
const results = { passed: 0, failed: 0, skipped: 0 };

function check(name, command, args) {
  console.log(`\n▶ ${name}: ${command} ${args.join(" ")}`);
  const { status } = spawnSync(command, args, { stdio: "inherit", shell: false });
  if (status === 0) {
    results.passed++;
  } else {
    results.failed++;
    console.log(`✗ ${name} failed (exit ${status})`);
  }
  return status === 0;
}

const built = check("build + typecheck", "turbo", [
  "run",
  "build",
  "typecheck",
  "--output-logs=errors-only",
]);
check("lint", "biome", ["check", "."]);

/**
 * Lavapipe (Mesa's software Vulkan driver) for the WebGPU tests, on Linux x64 with apt-get:
 * tools/lavapipe/setup.sh unpacks it into .cache/lavapipe; its env.json (VK_DRIVER_FILES,
 * LD_LIBRARY_PATH) goes into vitest's environment. A failed setup does not stop the suite: the
 * WebGPU tests then fail saying that no adapter was found.
 */
function lavapipeEnv() {
  if (process.platform !== "linux" || process.arch !== "x64") {
    return {};
  }
  if (spawnSync("sh", ["-c", "command -v apt-get"], { stdio: "ignore" }).status !== 0) {
    return {};
  }
  console.log("\n▶ lavapipe (software Vulkan for the WebGPU tests): tools/lavapipe/setup.sh");
  const { status } = spawnSync("bash", ["tools/lavapipe/setup.sh"], { stdio: "inherit" });
  const file = ".cache/lavapipe/env.json";
  if (status !== 0) {
    console.log(`✗ lavapipe setup failed (exit ${status}); the WebGPU tests will find no adapter`);
    return {};
  }
  if (!fs.existsSync(file)) {
    return {};
  }
  const env = JSON.parse(fs.readFileSync(file, "utf8"));
  console.log(`lavapipe: VK_DRIVER_FILES=${env.VK_DRIVER_FILES}`);
  return env;
}

/**
 * The native CPU backend's suites on AArch64 under qemu-user (tools/arm64/run.mjs): the NEON
 * paths' op-by-op, contract and golden-token tests, counted in the totals. Where qemu or the
 * aarch64 cross toolchain is missing (or BITNET_ARM64_TESTS=0), one skipped entry says why.
 */
function arm64Tests() {
  if (process.env.BITNET_ARM64_TESTS === "0") {
    console.log("\n▶ arm64 under qemu-user: skipped (BITNET_ARM64_TESTS=0)");
    results.skipped++;
    return;
  }
  console.log("\n▶ arm64 under qemu-user: tools/arm64/run.mjs");
  const report = ".cache/arm64-report.json";
  fs.rmSync(report, { force: true });
  const { status } = spawnSync("node", ["tools/arm64/run.mjs", "--json", report], {
    stdio: "inherit",
  });
  if (status === 3) {
    results.skipped++; // run.mjs printed the reason
    return;
  }
  if (!fs.existsSync(report)) {
    results.failed++;
    console.log(`✗ arm64 tests produced no report (exit ${status})`);
    return;
  }
  for (const run of JSON.parse(fs.readFileSync(report, "utf8")).runs) {
    results.passed += run.passed;
    results.failed += run.failed;
    results.skipped += run.skipped;
  }
}

if (built) {
  fs.mkdirSync(".cache", { recursive: true });
  // The native backend's tests keep their generated fixtures, the reference backend's logits and
  // its op-by-op captures here for the rest of this run (packages/kernels-cpu/test/models.ts),
  // and the arm64 run under qemu reuses what the native run made instead of computing it again
  // 10-20× slower. Emptied first, so no run sees another's.
  const testCache = path.resolve(".cache/test-shared");
  fs.rmSync(testCache, { recursive: true, force: true });
  process.env.BITNET_TEST_CACHE = testCache;
  const env = { ...process.env, ...lavapipeEnv() };
  const report = ".cache/vitest-report.json";
  fs.rmSync(report, { force: true });
  // At least two test files at a time. Vitest's default is one fewer than the CPUs, so on a
  // two-core machine it ran every file one after another (25 minutes), while many of them spend
  // their time waiting on a child process (llama.cpp, a server, Chromium, lavapipe) or run one
  // thread: two at a time took 18 minutes there, every test passing.
  const workers = extra.some((a) => a.startsWith("--maxWorkers"))
    ? []
    : [`--maxWorkers=${Math.max(2, os.availableParallelism() - 1)}`];
  console.log(`\n▶ vitest ${workers.join(" ")}`);
  spawnSync(
    "vitest",
    [
      "run",
      "--reporter=default",
      "--reporter=json",
      `--outputFile.json=${report}`,
      ...workers,
      ...extra,
    ],
    { stdio: "inherit", env },
  );
  if (fs.existsSync(report)) {
    const json = JSON.parse(fs.readFileSync(report, "utf8"));
    results.passed += json.numPassedTests;
    results.failed += json.numFailedTests;
    results.skipped += json.numPendingTests + json.numTodoTests;
    // A test file that fails to load reports no tests: count it as a failure.
    const brokenFiles = json.testResults.filter(
      (f) => f.status === "failed" && f.assertionResults.length === 0,
    ).length;
    results.failed += brokenFiles;
  } else {
    results.failed++;
    console.log("✗ vitest produced no report");
  }
  // A receipt from a real run on a fixture, verified with a replay (the receipts issue's CI gate).
  const model = ".cache/ci/tiny-i2s.gguf";
  const receipt = ".cache/ci/receipt.json";
  fs.mkdirSync(".cache/ci", { recursive: true });
  if (check("fixture for the receipt", "node", ["tools/fixtures/dist/cli.js", "tiny-i2s", model])) {
    const ran = check("run with --receipt", "node", [
      "apps/cli/dist/bitnet.js",
      "run",
      "-m",
      model,
      "-p",
      "The capital of France is",
      "-n",
      "16",
      "-s",
      "1234",
      "--receipt",
      receipt,
    ]);
    if (ran) {
      check("verify-receipt --replay", "node", [
        "apps/cli/dist/bitnet.js",
        "verify-receipt",
        receipt,
        "-m",
        model,
        "--replay",
      ]);
    } else {
      results.failed++;
    }
  }
  arm64Tests();
} else {
  results.failed++;
  console.log("✗ tests not run: the build failed");
}

console.log(`\n${results.passed} passed, ${results.failed} failed, ${results.skipped} skipped`);
process.exitCode = results.failed === 0 ? 0 : 1;
