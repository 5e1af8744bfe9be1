#!/usr/bin/env node
// Compiles the addon with node-gyp against the Node headers already on this machine (npm's
// `nodedir`, or the headers next to the running node binary) — never downloads headers.
// --force rebuilds even when build/Release is newer than every source.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";

const root = path.resolve(import.meta.dirname, "..");
const output = path.join(root, "build/Release/bitnet_kernels_cpu.node");
const force = process.argv.includes("--force");

function newestSource() {
  let newest = fs.statSync(path.join(root, "binding.gyp")).mtimeMs;
  for (const f of fs.readdirSync(path.join(root, "native"))) {
    newest = Math.max(newest, fs.statSync(path.join(root, "native", f)).mtimeMs);
  }
  return newest;
}

if (!force && fs.existsSync(output) && fs.statSync(output).mtimeMs > newestSource()) {
  console.log("kernels-cpu: native addon is up to date");
  process.exit(0);
}

function findNodedir() {
  const candidates = [
    process.env.npm_config_nodedir,
    process.env.NODEDIR,
    spawnSync("npm", ["config", "get", "nodedir"], { encoding: "utf8" }).stdout?.trim(),
    path.resolve(path.dirname(process.execPath), ".."),
  ];
  for (const c of candidates) {
    if (
      c &&
      c !== "undefined" &&
      c !== "null" &&
      fs.existsSync(path.join(c, "include/node/node_api.h"))
    ) {
      return c;
    }
  }
  return undefined;
}

const nodedir = findNodedir();
if (nodedir === undefined) {
  console.error(
    "kernels-cpu: could not find the Node.js headers (include/node/node_api.h) next to node or in npm's nodedir.\n" +
      "Install them (e.g. the nodejs-dev package) or set NODEDIR; the engine falls back to the reference backend meanwhile.",
  );
  process.exit(1);
}
const require = createRequire(import.meta.url);
const gyp = require.resolve("node-gyp/bin/node-gyp.js");
const jobs = String(Math.max(1, Math.min(4, (await import("node:os")).availableParallelism())));
const r = spawnSync(process.execPath, [gyp, "rebuild", `--nodedir=${nodedir}`, `--jobs=${jobs}`], {
  cwd: root,
  stdio: ["ignore", "inherit", "inherit"],
  env: { ...process.env, npm_config_nodedir: nodedir },
});
process.exit(r.status ?? 1);
