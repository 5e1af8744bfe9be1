#!/usr/bin/env node
// Compiles the addon with node-gyp against the Node headers already on this machine (npm's
// `nodedir`, or the headers next to the running node binary) — never downloads headers.
// --force rebuilds even when build/Release is newer than every source.
// --install marks a build run by the package's install hook (for the failure record).
//
// A failed build leaves build/native-build-failure.json: when, the command, its exit code, the
// first compiler `error:` line and the last 30 lines of output. src/loader.ts reads it to say why
// the native kernels are missing (`bitnet info`, and the fallback to the reference backend). A
// successful or up-to-date build removes it.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import { failureRecord } from "./build-failure.mjs";
import { findNodedir } from "./nodedir.mjs";

const root = path.resolve(import.meta.dirname, "..");
const output = path.join(root, "build/Release/bitnet_kernels_cpu.node");
const failureFile = path.join(root, "build", "native-build-failure.json");
const force = process.argv.includes("--force");
const during = process.argv.includes("--install") ? "install" : "build";

function recordFailure(command, exitCode, text) {
  try {
    fs.mkdirSync(path.dirname(failureFile), { recursive: true });
    const record = failureRecord({ during, command, exitCode, output: text });
    fs.writeFileSync(failureFile, `${JSON.stringify(record, null, 2)}\n`);
  } catch (error) {
    console.error(
      `kernels-cpu: could not record the build failure in ${failureFile}: ${error.message}`,
    );
  }
}

function clearFailure() {
  fs.rmSync(failureFile, { force: true });
}

function newestSource() {
  let newest = fs.statSync(path.join(root, "binding.gyp")).mtimeMs;
  for (const f of fs.readdirSync(path.join(root, "native"))) {
    newest = Math.max(newest, fs.statSync(path.join(root, "native", f)).mtimeMs);
  }
  return newest;
}

if (!force && fs.existsSync(output) && fs.statSync(output).mtimeMs > newestSource()) {
  clearFailure();
  console.log("kernels-cpu: native addon is up to date");
  process.exit(0);
}

const nodedir = findNodedir();
if (nodedir === undefined) {
  const message =
    "kernels-cpu: could not find the Node.js headers (include/node/node_api.h) next to node or in npm's nodedir.\n" +
    "Install them (e.g. the nodejs-dev package) or set NODEDIR; the engine falls back to the reference backend meanwhile.";
  console.error(message);
  recordFailure("find the Node.js headers (include/node/node_api.h)", 1, message);
  process.exit(1);
}
const require = createRequire(import.meta.url);
const gyp = require.resolve("node-gyp/bin/node-gyp.js");
const jobs = String(Math.max(1, Math.min(4, (await import("node:os")).availableParallelism())));
const args = [gyp, "rebuild", `--nodedir=${nodedir}`, `--jobs=${jobs}`];
// Output is passed through as it comes and kept (the last 2,000 lines) for the failure record.
let captured = "";
const keep = (chunk) => {
  captured += chunk;
  if (captured.length > 1 << 20) {
    captured = captured.split("\n").slice(-2000).join("\n");
  }
};
const exitCode = await new Promise((resolve) => {
  const child = spawn(process.execPath, args, {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, npm_config_nodedir: nodedir },
  });
  child.stdout.on("data", (chunk) => {
    process.stdout.write(chunk);
    keep(chunk.toString());
  });
  child.stderr.on("data", (chunk) => {
    process.stderr.write(chunk);
    keep(chunk.toString());
  });
  child.on("error", (error) => {
    keep(`${error.message}\n`);
    resolve(1);
  });
  child.on("close", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
});
if (exitCode === 0) {
  clearFailure();
} else {
  const command = `node-gyp ${args.slice(1).join(" ")}`;
  recordFailure(command, exitCode, captured);
  console.error(
    `kernels-cpu: native build failed (exit ${exitCode}); recorded in ${path.relative(root, failureFile)}`,
  );
}
process.exit(exitCode);
