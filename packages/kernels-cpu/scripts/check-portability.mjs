#!/usr/bin/env node
// Syntax-checks every native source for the systems this Linux machine cannot build for:
//   host             the host compiler, as node-gyp builds here (catches nothing new, a baseline);
//   host-not-linux   the same with scripts/portability/not-linux.h forced in: Linux-only macros
//                    (MADV_HUGEPAGE, MAP_POPULATE, __linux__, __GLIBC__, …) hidden and
//                    aligned_alloc poisoned, so the macOS / BSD fallback branches must compile;
//   aarch64          aarch64-linux-gnu-g++ (Debian's g++-aarch64-linux-gnu): no x86 intrinsics;
//   aarch64-not-linux both (Apple silicon, ARM BSDs).
// Sources, defines and flags come from binding.gyp, so a new source is checked without edits here.
// A variant whose compiler is missing is skipped with the reason.
//
// Usage: node scripts/check-portability.mjs [--json] [--variants host,aarch64-not-linux]
// Exit code 1 when a checked variant fails.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";

const root = path.resolve(import.meta.dirname, "..");
const require = createRequire(import.meta.url);
const shim = path.join(root, "scripts", "portability", "not-linux.h");

const hostCxx = process.env.CXX || "g++";
const VARIANTS = {
  host: { cxx: hostCxx, shim: false },
  "host-not-linux": { cxx: hostCxx, shim: true },
  aarch64: { cxx: "aarch64-linux-gnu-g++", shim: false },
  "aarch64-not-linux": { cxx: "aarch64-linux-gnu-g++", shim: true },
};

function gypTarget() {
  // binding.gyp is JSON here (gyp also accepts Python literals; keep it JSON).
  const gyp = JSON.parse(fs.readFileSync(path.join(root, "binding.gyp"), "utf8"));
  return gyp.targets[0];
}

function nodeInclude() {
  const candidates = [
    process.env.npm_config_nodedir,
    process.env.NODEDIR,
    path.resolve(path.dirname(process.execPath), ".."),
  ];
  for (const c of candidates) {
    if (c && fs.existsSync(path.join(c, "include/node/node_api.h"))) {
      return path.join(c, "include/node");
    }
  }
  return undefined;
}

function compilerVersion(cxx) {
  const r = spawnSync(cxx, ["--version"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.split("\n")[0] : undefined;
}

function run(cmd, args) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (c) => {
      out += c;
    });
    child.stderr.on("data", (c) => {
      out += c;
    });
    child.on("error", (e) => resolve({ code: 1, out: `${out}${e.message}\n` }));
    child.on("close", (code) => resolve({ code: code ?? 1, out }));
  });
}

/** Checks the named variants; resolves to one result per variant. */
export async function checkPortability(names = Object.keys(VARIANTS)) {
  const target = gypTarget();
  const sources = target.sources;
  const listed = new Set(sources.map((s) => path.basename(s)));
  const unlisted = fs
    .readdirSync(path.join(root, "native"))
    .filter((f) => f.endsWith(".cc") && !listed.has(f));
  const include = nodeInclude();
  // (node-addon-api's include_dir is relative to the working directory it was required from.)
  const addonApi = path.dirname(require.resolve("node-addon-api/package.json"));
  const flags = [
    "-fsyntax-only",
    "-Werror",
    ...target.cflags_cc.filter((f) => f.startsWith("-std=") || f.startsWith("-W")),
    ...target.defines.map((d) => `-D${d}`),
    "-DNAPI_CPP_EXCEPTIONS", // from node-addon-api's node_addon_api_except target
    `-I${addonApi}`,
    ...(include ? [`-I${include}`] : []),
  ];
  const results = [];
  for (const name of names) {
    const variant = VARIANTS[name];
    if (variant === undefined) {
      throw new Error(`unknown variant ${name} (known: ${Object.keys(VARIANTS).join(", ")})`);
    }
    const version = compilerVersion(variant.cxx);
    if (version === undefined) {
      results.push({
        variant: name,
        status: "skipped",
        reason: `${variant.cxx} not found${name.startsWith("aarch64") ? " (apt-get install g++-aarch64-linux-gnu)" : ""}`,
      });
      continue;
    }
    if (include === undefined) {
      results.push({
        variant: name,
        status: "skipped",
        reason: "Node.js headers (include/node/node_api.h) not found",
      });
      continue;
    }
    const args = [...flags, ...(variant.shim ? ["-include", shim] : [])];
    const failures = [];
    // Two compiles at a time: the machine is shared.
    const queue = [...sources];
    const workers = Array.from({ length: Math.min(2, os.availableParallelism()) }, async () => {
      for (let source = queue.shift(); source !== undefined; source = queue.shift()) {
        const r = await run(variant.cxx, [...args, source]);
        if (r.code !== 0) {
          const errors = r.out.split("\n").filter((l) => /error|warning/.test(l));
          failures.push({
            source,
            output: (errors.length > 0 ? errors : r.out.split("\n")).slice(0, 20).join("\n"),
          });
        }
      }
    });
    await Promise.all(workers);
    results.push({
      variant: name,
      status: failures.length === 0 && unlisted.length === 0 ? "ok" : "failed",
      compiler: version,
      sources: sources.length,
      failures,
      ...(unlisted.length > 0 ? { unlisted } : {}),
    });
  }
  return results;
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1] === import.meta.filename) {
  const json = process.argv.includes("--json");
  const at = process.argv.indexOf("--variants");
  const names = at >= 0 ? process.argv[at + 1].split(",") : undefined;
  const results = await checkPortability(names);
  if (json) {
    console.log(JSON.stringify(results, null, 2));
  } else {
    for (const r of results) {
      if (r.status === "skipped") {
        console.log(`${r.variant}: skipped - ${r.reason}`);
        continue;
      }
      console.log(`${r.variant}: ${r.status} (${r.sources} sources, ${r.compiler})`);
      for (const f of r.failures) {
        console.log(`  ${f.source}:\n    ${f.output.split("\n").join("\n    ")}`);
      }
      if (r.unlisted) {
        console.log(`  not in binding.gyp's sources: ${r.unlisted.join(", ")}`);
      }
    }
  }
  process.exit(results.some((r) => r.status === "failed") ? 1 : 0);
}
