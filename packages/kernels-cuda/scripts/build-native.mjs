#!/usr/bin/env node
// Compiles the CUDA addon with nvcc (CUDA 12 or 13) against the Node headers already on this
// machine: a fat binary for sm_80, sm_86, sm_89 and sm_90 plus sm_90 PTX (for newer GPUs), the
// CUDA runtime linked statically, so the addon needs only the NVIDIA driver where it runs.
//
// Without nvcc nothing is compiled and build/unavailable.json says why (src/loader.ts reads it:
// `bitnet info` and `--backend auto` report the reason). A failed compile leaves
// build/native-build-failure.json. Neither fails `pnpm install` (--install): the CUDA backend is
// optional. An explicit build (`pnpm build:native`, or `--strict`) fails on a compile error, and
// the package's build test fails whenever nvcc is present and the addon is missing, so a compile
// error cannot land.
//
// --force rebuilds even when the addon is newer than every source.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import { findNvcc } from "./nvcc.mjs";

const root = path.resolve(import.meta.dirname, "..");
const buildDir = path.join(root, "build");
const output = path.join(buildDir, "Release", "bitnet_kernels_cuda.node");
const unavailableFile = path.join(buildDir, "unavailable.json");
const failureFile = path.join(buildDir, "native-build-failure.json");
const force = process.argv.includes("--force");
const install = process.argv.includes("--install");
const strict = process.argv.includes("--strict") || (!install && force);

/** Real GPU code for these (Ampere, Ampere consumer, Ada, Hopper), PTX for what comes after. */
export const ARCHS = ["80", "86", "89", "90"];

function write(file, record) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(
    file,
    `${JSON.stringify({ at: new Date().toISOString(), ...record }, null, 2)}\n`,
  );
}

/** A directory holding include/node/node_api.h (npm's nodedir, NODEDIR, or next to node). */
function findNodedir() {
  const candidates = [
    process.env.npm_config_nodedir,
    process.env.NODEDIR,
    spawnSync("npm", ["config", "get", "nodedir"], { encoding: "utf8" }).stdout?.trim(),
    path.resolve(path.dirname(process.execPath), ".."),
  ];
  return candidates.find(
    (c) =>
      c &&
      c !== "undefined" &&
      c !== "null" &&
      fs.existsSync(path.join(c, "include/node/node_api.h")),
  );
}

function newestSource() {
  let newest = fs.statSync(import.meta.filename).mtimeMs;
  for (const f of fs.readdirSync(path.join(root, "native"))) {
    newest = Math.max(newest, fs.statSync(path.join(root, "native", f)).mtimeMs);
  }
  return newest;
}

function run(command, args) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    let text = "";
    child.stdout.on("data", (c) => {
      text += c;
    });
    child.stderr.on("data", (c) => {
      text += c;
    });
    child.on("error", (e) => resolve({ code: 127, text: `${text}${e.message}\n` }));
    child.on("close", (code) => resolve({ code: code ?? 1, text }));
  });
}

const found = findNvcc();
const nodedir = findNodedir();
const fail = (command, code, text) => {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== "");
  const error = lines.find((l) => /\berror\b/i.test(l)) ?? lines.at(-1) ?? `exit code ${code}`;
  write(failureFile, {
    during: install ? "install" : "build",
    command,
    exitCode: code,
    error: error.trim(),
    log: lines.slice(-30).join("\n"),
  });
  console.error(`kernels-cuda: build failed - ${error.trim()}`);
  process.exit(strict ? 1 : 0);
};
if (found.nvcc === undefined) {
  write(unavailableFile, { reason: found.reason });
} else {
  fs.rmSync(unavailableFile, { force: true });
}
// What kind of addon this machine builds: GPU code with this nvcc, or the host twins alone.
const kind = found.nvcc === undefined ? "host-only" : `cuda ${found.version} ${found.nvcc}`;
const kindFile = path.join(buildDir, "Release", "kind.txt");
const builtKind = fs.existsSync(kindFile) ? fs.readFileSync(kindFile, "utf8") : "";
if (
  !force &&
  builtKind === kind &&
  fs.existsSync(output) &&
  fs.statSync(output).mtimeMs > newestSource()
) {
  fs.rmSync(failureFile, { force: true });
  console.log("kernels-cuda: addon is up to date");
  process.exit(0);
}
if (nodedir === undefined) {
  fail(
    "find the Node.js headers",
    1,
    "error: could not find include/node/node_api.h next to node or in npm's nodedir",
  );
}
const require = createRequire(import.meta.url);
const addonApi = path.dirname(require.resolve("node-addon-api/package.json"));
const obj = path.join(buildDir, "obj");
fs.mkdirSync(obj, { recursive: true });
fs.mkdirSync(path.dirname(output), { recursive: true });
const common = [
  "-std=c++17",
  "-O3",
  "-Xcompiler",
  "-fPIC,-fvisibility=hidden,-fexceptions,-Wall",
  `-I${path.join(nodedir, "include", "node")}`,
  `-I${addonApi}`,
  "-DNAPI_VERSION=8",
  "-DNAPI_CPP_EXCEPTIONS",
  "-DNODE_ADDON_API_DISABLE_DEPRECATED",
];
if (found.nvcc === undefined) {
  // No CUDA toolkit: the host twins alone, compiled by the C++ compiler, so that the kernels'
  // arithmetic is still tested here; status() reports the reason there is no GPU code.
  const cxx = process.env.CXX || "g++";
  const args = [
    "-std=c++17",
    "-O3",
    "-shared",
    "-fPIC",
    "-fvisibility=hidden",
    "-Wall",
    `-I${path.join(nodedir, "include", "node")}`,
    `-I${addonApi}`,
    "-DNAPI_VERSION=8",
    "-DNAPI_CPP_EXCEPTIONS",
    "-DNODE_ADDON_API_DISABLE_DEPRECATED",
    "-DBITNET_HOST_ONLY",
    `-DBITNET_HOST_ONLY_REASON=${JSON.stringify(found.reason)}`,
    "native/addon.cc",
    "native/host.cc",
    "native/model.cc",
    "-o",
    output,
    "-static-libstdc++",
  ];
  const r = await run(cxx, args);
  if (r.code !== 0) {
    fail([cxx, ...args].join(" "), r.code, r.text);
  }
  fs.rmSync(failureFile, { force: true });
  fs.writeFileSync(kindFile, kind);
  console.log(`kernels-cuda: no GPU code (${found.reason}); built the host twins only`);
  process.exit(0);
}
// --fmad=false: no multiply-add contraction, so the kernels round where the reference rounds.
const gencode = [
  ...ARCHS.flatMap((a) => ["-gencode", `arch=compute_${a},code=sm_${a}`]),
  "-gencode",
  "arch=compute_90,code=compute_90",
];
const started = Date.now();
console.log(
  `kernels-cuda: compiling with ${found.nvcc} (CUDA ${found.version}) for sm_${ARCHS.join(", sm_")} + PTX`,
);
const steps = [
  [
    found.nvcc,
    [
      ...common,
      "--fmad=false",
      ...gencode,
      "-c",
      "native/kernels.cu",
      "-o",
      path.join(obj, "kernels.o"),
    ],
  ],
  [found.nvcc, [...common, "-c", "native/addon.cc", "-o", path.join(obj, "addon.o")]],
  [found.nvcc, [...common, "-c", "native/host.cc", "-o", path.join(obj, "host.o")]],
  [found.nvcc, [...common, "-c", "native/model.cc", "-o", path.join(obj, "model.o")]],
];
const results = await Promise.all(steps.map(([c, a]) => run(c, a)));
for (const [i, r] of results.entries()) {
  if (r.code !== 0) {
    fail([steps[i][0], ...steps[i][1]].join(" "), r.code, r.text);
  }
}
const linkArgs = [
  "-shared",
  "-o",
  output,
  path.join(obj, "kernels.o"),
  path.join(obj, "addon.o"),
  path.join(obj, "host.o"),
  path.join(obj, "model.o"),
  ...gencode,
  "-Xcompiler",
  "-static-libstdc++",
];
const linked = await run(found.nvcc, linkArgs);
if (linked.code !== 0) {
  fail([found.nvcc, ...linkArgs].join(" "), linked.code, linked.text);
}
fs.rmSync(failureFile, { force: true });
fs.writeFileSync(kindFile, kind);
console.log(
  `kernels-cuda: built ${path.relative(root, output)} in ${((Date.now() - started) / 1000).toFixed(1)} s (${os.cpus().length} cores)`,
);
