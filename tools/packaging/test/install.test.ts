/**
 * The packages as a user installs them, on a machine without a compiler: the CLI and every
 * workspace package it depends on are packed with `pnpm pack` (workspace: and catalog: versions
 * rewritten, as published), installed with npm into an empty folder with a PATH that has node,
 * npm and sh but no g++, gcc, cc or make, and `bitnet run` generates on a fixture with the cpu
 * backend. kernels-cpu's install hook must pick the prebuilt addon (prebuilds/linux-x64, built by
 * scripts/prebuilds.mjs before packing) and compile nothing.
 *
 * The same installed folder then runs under qemu-user with an arm64 Node.js: the loader finds
 * prebuilds/linux-arm64 (cross-compiled into the same tarball) and the text matches.
 */
import { type SpawnSyncReturns, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { beforeAll, describe, expect, it } from "vitest";
import { crossCompileProblem, emulationProblem, qemuNodeCommand } from "../../arm64/lib.mjs";

const REPO = path.resolve(import.meta.dirname, "../../..");
const WORK = path.join(REPO, ".cache", "install-test");
const TARBALLS = path.join(WORK, "tarballs");
const APP = path.join(WORK, "app");
const BIN = path.join(WORK, "bin");
const FIXTURE = path.join(WORK, "tiny-i2s.gguf");
const KERNELS_CPU = path.join(REPO, "packages", "kernels-cpu");
const PROMPT = "The capital of France is";
const SETUP_TIMEOUT = 20 * 60_000;

const arm64Problem =
  process.platform !== "linux" || process.arch !== "x64"
    ? `the arm64 leg runs on Linux x64 (this is ${process.platform} ${process.arch})`
    : (emulationProblem() ?? crossCompileProblem());

function sh(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {},
): SpawnSyncReturns<string> {
  return spawnSync(command, args, {
    encoding: "utf8",
    maxBuffer: 64 << 20,
    timeout: options.timeout ?? 10 * 60_000,
    ...options,
  });
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  if (r.status !== 0) {
    throw new Error(
      `${what} failed (exit ${r.status ?? r.signal}):\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`,
    );
  }
  return r.stdout;
}

interface WorkspacePackage {
  readonly name: string;
  readonly dir: string;
  readonly deps: readonly string[];
}

/** Every workspace package by name, with its workspace dependencies. */
function workspacePackages(): Map<string, WorkspacePackage> {
  const out = new Map<string, WorkspacePackage>();
  for (const group of ["packages", "apps", "tools"]) {
    for (const entry of fs.readdirSync(path.join(REPO, group))) {
      const file = path.join(REPO, group, entry, "package.json");
      if (!fs.existsSync(file)) {
        continue;
      }
      const json = JSON.parse(fs.readFileSync(file, "utf8")) as {
        name: string;
        dependencies?: Record<string, string>;
      };
      const deps = Object.entries(json.dependencies ?? {})
        .filter(([, spec]) => spec.startsWith("workspace:"))
        .map(([name]) => name);
      out.set(json.name, { name: json.name, dir: path.dirname(file), deps });
    }
  }
  return out;
}

/** `root` and every workspace package it depends on, transitively. */
function closure(root: string, all: Map<string, WorkspacePackage>): WorkspacePackage[] {
  const seen = new Map<string, WorkspacePackage>();
  const visit = (name: string): void => {
    const pkg = all.get(name);
    if (pkg === undefined || seen.has(name)) {
      return;
    }
    seen.set(name, pkg);
    pkg.deps.forEach(visit);
  };
  visit(root);
  return [...seen.values()];
}

/** pnpm as this test run was started (npm_execpath under `pnpm test`), else the pinned one through npx. */
function pnpm(): { command: string; prefix: string[] } {
  const exec = process.env["npm_execpath"];
  if (exec !== undefined && /pnpm/.test(path.basename(exec))) {
    return { command: process.execPath, prefix: [exec] };
  }
  const pinned = JSON.parse(fs.readFileSync(path.join(REPO, "package.json"), "utf8"))
    .packageManager as string;
  return { command: "npx", prefix: ["--yes", pinned] };
}

/** A PATH folder with node, npm, npx and a shell, and no compiler or make. */
function compilerFreeBin(): string {
  fs.rmSync(BIN, { recursive: true, force: true });
  fs.mkdirSync(BIN, { recursive: true });
  const npmCli = path.join(
    path.dirname(process.execPath),
    "..",
    "lib",
    "node_modules",
    "npm",
    "bin",
  );
  const links: [string, string][] = [
    ["node", process.execPath],
    ["sh", "/bin/sh"],
    ["npm", path.join(npmCli, "npm-cli.js")],
    ["npx", path.join(npmCli, "npx-cli.js")],
  ];
  for (const [name, target] of links) {
    fs.symlinkSync(fs.realpathSync(target), path.join(BIN, name));
  }
  return BIN;
}

const hiddenEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: BIN };
  for (const key of Object.keys(env)) {
    // Nothing from this run's tool chain may leak in: no compiler override, no addon override,
    // no npm settings of the repository's install.
    if (
      /^(CC|CXX|LINK|BITNET_KERNELS_CPU_PATH|BITNET_KERNEL_PATH)$/.test(key) ||
      key.startsWith("npm_")
    ) {
      delete env[key];
    }
  }
  return env;
};

let installLog = "";

beforeAll(async () => {
  fs.rmSync(WORK, { recursive: true, force: true });
  fs.mkdirSync(TARBALLS, { recursive: true });
  fs.mkdirSync(APP, { recursive: true });

  // 1. The prebuilt addons this package ships: the host's, and arm64's where it can be built.
  const arches = crossCompileProblem() === undefined ? "x64,arm64" : "x64";
  ok(
    sh(process.execPath, [path.join(KERNELS_CPU, "scripts", "prebuilds.mjs"), "--arch", arches]),
    "prebuilds.mjs",
  );

  // 2. Pack the CLI and its workspace closure as they would be published.
  const packages = closure("@bitnet-ts/cli", workspacePackages());
  const { command, prefix } = pnpm();
  const tarballs = new Map<string, string>();
  for (const pkg of packages) {
    const out = ok(
      sh(command, [...prefix, "pack", "--pack-destination", TARBALLS], { cwd: pkg.dir }),
      `pnpm pack ${pkg.name}`,
    );
    const tarball = out
      .trim()
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l.endsWith(".tgz"))
      .at(-1);
    if (tarball === undefined) {
      throw new Error(`pnpm pack ${pkg.name} printed no tarball:\n${out}`);
    }
    tarballs.set(pkg.name, `file:${path.relative(APP, path.resolve(TARBALLS, tarball))}`);
  }

  // 3. An empty project that depends on the CLI; overrides point every workspace package at its
  //    tarball (the registry has none of them).
  fs.writeFileSync(
    path.join(APP, "package.json"),
    `${JSON.stringify(
      {
        name: "bitnet-install-test",
        private: true,
        dependencies: { "@bitnet-ts/cli": tarballs.get("@bitnet-ts/cli") },
        overrides: Object.fromEntries(tarballs),
      },
      null,
      2,
    )}\n`,
  );
  compilerFreeBin();
  // node-llama-cpp (an optional dependency of crossval, the llama.cpp comparison) is not needed
  // to run: --omit=optional leaves it out, as a user without it would.
  const install = sh(
    "npm",
    [
      "install",
      "--omit=optional",
      "--no-audit",
      "--no-fund",
      "--foreground-scripts",
      "--cache",
      path.join(REPO, ".cache", "npm-cache"),
    ],
    { cwd: APP, env: hiddenEnv(), timeout: 15 * 60_000 },
  );
  installLog = `${install.stdout}\n${install.stderr}`;
  ok(install, "npm install (no compiler)");

  await writeFixture(PRESETS["tiny-i2s"]!, FIXTURE);
}, SETUP_TIMEOUT);

const installed = (...parts: string[]): string => path.join(APP, "node_modules", ...parts);
const bitnetJs = (): string => installed("@bitnet-ts", "cli", "dist", "bitnet.js");

function runArgs(receipt: string): string[] {
  return [
    "run",
    "-m",
    FIXTURE,
    "-p",
    PROMPT,
    "-n",
    "12",
    "--temp",
    "0",
    "--backend",
    "cpu",
    "--json",
    "--receipt",
    receipt,
  ];
}

/** The minor version of a "2.x" glibc version string (NaN for anything else). */
function glibcMinor(version: string): number {
  const m = /^2\.(\d+)$/.exec(version);
  return m === null ? Number.NaN : Number(m[1]);
}

interface RunResult {
  readonly text: string;
  readonly tokens: readonly number[];
}
interface Receipt {
  readonly backend: { readonly name: string; readonly kernel_path: string | null };
}

describe("installed from packed tarballs on a machine without a compiler", () => {
  it("has no compiler or make on its PATH", () => {
    const probe = sh(
      "sh",
      ["-c", "command -v g++ || command -v gcc || command -v cc || command -v make"],
      {
        env: hiddenEnv(),
      },
    );
    expect(probe.stdout.trim()).toBe("");
    expect(probe.status).not.toBe(0);
  });

  it("kernels-cpu's install took the linux-x64 prebuild and compiled nothing", () => {
    expect(installLog).toContain(
      "kernels-cpu: using the prebuilt addon prebuilds/linux-x64/bitnet_kernels_cpu.node",
    );
    expect(installLog).not.toMatch(/compiling the native addon/);
    expect(fs.existsSync(installed("@bitnet-ts", "kernels-cpu", "build"))).toBe(false);
    const manifest = JSON.parse(
      fs.readFileSync(
        installed("@bitnet-ts", "kernels-cpu", "prebuilds", "linux-x64", "manifest.json"),
        "utf8",
      ),
    ) as { arch: string; libc: string; libstdcxx: string; glibc: string };
    expect(manifest).toMatchObject({ arch: "x64", libc: "glibc", libstdcxx: "static" });
    // The README's platform table promises glibc 2.34 (Ubuntu 22.04, RHEL 9): keep it true.
    expect(glibcMinor(manifest.glibc)).toBeLessThanOrEqual(34);
  });

  it("bitnet run generates with the cpu backend, the same text as the workspace's CLI", () => {
    const receiptFile = path.join(WORK, "receipt-x64.json");
    const r = ok(
      sh(process.execPath, [bitnetJs(), ...runArgs(receiptFile)], { env: hiddenEnv(), cwd: APP }),
      "installed bitnet run",
    );
    const result = JSON.parse(r) as RunResult;
    const receipt = JSON.parse(fs.readFileSync(receiptFile, "utf8")) as Receipt;
    expect(receipt.backend.name).toBe("cpu");
    expect(receipt.backend.kernel_path).not.toBeNull();
    expect(result.tokens.length).toBe(12);

    const workspaceReceipt = path.join(WORK, "receipt-workspace.json");
    const reference = JSON.parse(
      ok(
        sh(process.execPath, [
          path.join(REPO, "apps", "cli", "dist", "bitnet.js"),
          ...runArgs(workspaceReceipt),
        ]),
        "workspace bitnet run",
      ),
    ) as RunResult;
    expect(result.tokens).toEqual(reference.tokens);
    expect(result.text).toBe(reference.text);
  });

  it.skipIf(arm64Problem !== undefined)(
    `the same installed folder runs on arm64 under qemu with the linux-arm64 prebuild${arm64Problem === undefined ? "" : ` (skipped: ${arm64Problem})`}`,
    { timeout: 10 * 60_000 },
    () => {
      const receiptFile = path.join(WORK, "receipt-arm64.json");
      const { command, args } = qemuNodeCommand("max", [bitnetJs(), ...runArgs(receiptFile)]);
      const result = JSON.parse(
        ok(sh(command, args, { env: hiddenEnv(), cwd: APP }), "arm64 bitnet run"),
      ) as RunResult;
      const receipt = JSON.parse(fs.readFileSync(receiptFile, "utf8")) as Receipt;
      expect(receipt.backend).toMatchObject({ name: "cpu", kernel_path: "neon-i8mm" });
      const manifest = JSON.parse(
        fs.readFileSync(
          installed("@bitnet-ts", "kernels-cpu", "prebuilds", "linux-arm64", "manifest.json"),
          "utf8",
        ),
      ) as { arch: string; glibc: string; libstdcxx: string };
      expect(manifest).toMatchObject({ arch: "arm64", libstdcxx: "static" });
      expect(glibcMinor(manifest.glibc)).toBeLessThanOrEqual(34);
      const x64 = JSON.parse(
        ok(
          sh(process.execPath, [bitnetJs(), ...runArgs(path.join(WORK, "r.json"))], {
            env: hiddenEnv(),
          }),
          "x64 run",
        ),
      ) as RunResult;
      expect(result.tokens).toEqual(x64.tokens);
    },
  );
});
