#!/usr/bin/env node
// Builds the prebuilt addons that ship in the package (prebuilds/<platform>-<arch>/), so that
// `npm install` on a matching machine needs no compiler (scripts/install.mjs loads one and only
// compiles when none loads, or when asked).
//
//   node scripts/prebuilds.mjs [--arch x64,arm64] [--force]
//
// The host's architecture is the build/Release addon (build-native.mjs: rebuilt when stale or
// with --force). Another architecture is cross-compiled by node-gyp in a scratch copy of the
// sources with Debian's cross toolchain (g++-aarch64-linux-gnu for arm64,
// g++-x86-64-linux-gnu for x64); the Node headers are architecture-independent. Every addon
// links libstdc++ statically (binding.gyp; native/glibc_compat.cc keeps it off glibc 2.36), so it
// needs only glibc ≥ 2.34 and libgcc_s; each folder gets a
// manifest.json: target, the newest glibc symbol version it needs, N-API version, addon ABI,
// compiler, size and sha256. Linux only (the only OS these machines can build for).
import { spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { findNodedir } from "./nodedir.mjs";

const root = path.resolve(import.meta.dirname, "..");
const ADDON = "bitnet_kernels_cpu.node";
const TRIPLES = { x64: "x86_64-linux-gnu", arm64: "aarch64-linux-gnu" };

function arg(name) {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
}
const force = process.argv.includes("--force");
const arches = (arg("--arch") ?? process.arch).split(",").filter(Boolean);
if (process.platform !== "linux") {
  console.error(`prebuilds: only Linux prebuilds can be built here (this is ${process.platform})`);
  process.exit(1);
}

function run(command, args, options = {}) {
  console.log(`$ ${command} ${args.join(" ")}`);
  const r = spawnSync(command, args, { stdio: "inherit", ...options });
  if (r.status !== 0) {
    throw new Error(`${command} failed (exit ${r.status ?? r.signal ?? r.error?.message})`);
  }
}

function hasCommand(name) {
  return spawnSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore" }).status === 0;
}

/** The newest GLIBC_x.y version the ELF file asks for (its version-needed strings). */
function glibcNeeded(file) {
  const text = fs.readFileSync(file).toString("latin1");
  let best;
  for (const m of text.matchAll(/GLIBC_(\d+)\.(\d+)(?:\.(\d+))?\0/g)) {
    const v = [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
    if (
      best === undefined ||
      v[0] > best[0] ||
      (v[0] === best[0] && (v[1] > best[1] || (v[1] === best[1] && v[2] > best[2])))
    ) {
      best = v;
    }
  }
  return best === undefined ? null : best[2] === 0 ? `${best[0]}.${best[1]}` : best.join(".");
}

/** The C++ standard library versions it still needs dynamically (none when linked statically). */
function libstdcxxNeeded(file) {
  return fs.readFileSync(file).toString("latin1").includes("GLIBCXX_") ? "dynamic" : "static";
}

function compilerVersion(cxx) {
  const r = spawnSync(cxx, ["--version"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.split("\n")[0].trim() : cxx;
}

function buildHost() {
  run(
    process.execPath,
    [path.join(root, "scripts/build-native.mjs"), ...(force ? ["--force"] : [])],
    {
      cwd: root,
    },
  );
  return { file: path.join(root, "build", "Release", ADDON), cxx: process.env.CXX || "g++" };
}

function buildCross(arch) {
  const triple = TRIPLES[arch];
  if (triple === undefined) {
    throw new Error(
      `no cross toolchain known for ${arch} (known: ${Object.keys(TRIPLES).join(", ")})`,
    );
  }
  const cxx = `${triple}-g++`;
  if (!hasCommand(cxx)) {
    throw new Error(
      `${cxx} not found: install Debian's g++-${triple.replace(/_/g, "-").replace("-linux-gnu", "")}-linux-gnu`,
    );
  }
  const nodedir = findNodedir();
  if (nodedir === undefined) {
    throw new Error("the Node.js headers (include/node/node_api.h) were not found");
  }
  // A scratch copy: node-gyp writes build/ next to binding.gyp, and the host build lives there.
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), `kernels-cpu-${arch}-`));
  try {
    fs.cpSync(path.join(root, "native"), path.join(scratch, "native"), { recursive: true });
    fs.copyFileSync(path.join(root, "binding.gyp"), path.join(scratch, "binding.gyp"));
    fs.symlinkSync(path.join(root, "node_modules"), path.join(scratch, "node_modules"));
    const gyp = path.join(root, "node_modules", "node-gyp", "bin", "node-gyp.js");
    const jobs = String(Math.max(1, Math.min(4, os.availableParallelism())));
    run(
      process.execPath,
      [
        gyp,
        "rebuild",
        `--arch=${arch}`,
        `--nodedir=${nodedir}`,
        `--jobs=${jobs}`,
        "--loglevel=warn",
      ],
      {
        cwd: scratch,
        env: {
          ...process.env,
          CC: `${triple}-gcc`,
          CXX: cxx,
          LINK: cxx,
          AR: `${triple}-ar`,
          npm_config_nodedir: nodedir,
        },
      },
    );
    const out = path.join(os.tmpdir(), `${ADDON}.${arch}.${process.pid}`);
    fs.copyFileSync(path.join(scratch, "build", "Release", ADDON), out);
    return { file: out, cxx, temporary: true };
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

const abiMatch = /abiVersion",\s*Napi::Number::New\(env,\s*(\d+)\)/.exec(
  fs.readFileSync(path.join(root, "native", "addon.cc"), "utf8"),
);
const napiMatch = /NAPI_VERSION=(\d+)/.exec(
  fs.readFileSync(path.join(root, "binding.gyp"), "utf8"),
);

let failed = 0;
for (const arch of arches) {
  const target = `linux-${arch}`;
  try {
    const built = arch === process.arch ? buildHost() : buildCross(arch);
    const dir = path.join(root, "prebuilds", target);
    fs.mkdirSync(dir, { recursive: true });
    const dest = path.join(dir, ADDON);
    fs.copyFileSync(built.file, dest);
    if (built.temporary) {
      fs.rmSync(built.file, { force: true });
    }
    const bytes = fs.readFileSync(dest);
    const manifest = {
      target,
      platform: "linux",
      arch,
      libc: "glibc",
      glibc: glibcNeeded(dest),
      libstdcxx: libstdcxxNeeded(dest),
      napiVersion: napiMatch ? Number(napiMatch[1]) : null,
      abiVersion: abiMatch ? Number(abiMatch[1]) : null,
      compiler: compilerVersion(built.cxx),
      bytes: bytes.length,
      sha256: crypto.createHash("sha256").update(bytes).digest("hex"),
      builtAt: new Date().toISOString(),
    };
    fs.writeFileSync(path.join(dir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
    console.log(
      `prebuilds: ${target} → ${path.relative(root, dest)} (${(bytes.length / 1024).toFixed(0)} KiB, glibc ≥ ${manifest.glibc}, libstdc++ ${manifest.libstdcxx})`,
    );
  } catch (error) {
    failed++;
    console.error(`prebuilds: ${target} failed: ${error.message}`);
  }
}
process.exit(failed === 0 ? 0 : 1);
