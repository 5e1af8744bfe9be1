/**
 * Finds and loads the compiled addon. Order: an explicit path (option or BITNET_KERNELS_CPU_PATH)
 * → build/Release (compiled on this machine: at install when no prebuild loaded or a build from
 * source was asked for, or by a developer) → the prebuilt binary for this platform and CPU
 * architecture (prebuilds/<platform>-<arch>, shipped in the package). On failure, one error lists every
 * attempt and the fix; when the build at install failed, the error starts with why (from the
 * record scripts/build-native.mjs leaves in build/native-build-failure.json).
 */

import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { BitnetError } from "@bitnet-ts/errors";
import type { NativeBinding } from "./binding";

export class KernelUnavailableError extends BitnetError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("KERNEL_UNAVAILABLE", message, options);
  }
}

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** The addon ABI this TypeScript expects (bumped with every change to binding.ts). */
export const ABI_VERSION = 16;

/** Where scripts/build-native.mjs records a failed build (removed by the next successful one). */
export const BUILD_FAILURE_FILE: string = path.join(
  packageRoot,
  "build",
  "native-build-failure.json",
);

/** Why the native build failed: when, the first compiler error line, the last lines of output. */
export interface NativeBuildFailure {
  /** ISO time of the failed build. */
  readonly at: string;
  /** The first `error:` line of the compiler (else node-gyp's reason). */
  readonly error: string;
  /** The last ~30 lines of the build output. */
  readonly log: string;
}

interface BuildFailureRecord extends NativeBuildFailure {
  readonly during?: string;
  readonly command?: string;
  readonly exitCode?: number;
}

function readBuildFailure(file: string): BuildFailureRecord | undefined {
  let record: unknown;
  try {
    record = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch {
    return undefined; // no record (the usual case), or not one we can read
  }
  if (typeof record !== "object" || record === null) {
    return undefined;
  }
  const r = record as Record<string, unknown>;
  if (typeof r["error"] !== "string") {
    return undefined;
  }
  return {
    at: typeof r["at"] === "string" ? r["at"] : "",
    error: r["error"],
    log: typeof r["log"] === "string" ? r["log"] : "",
    ...(typeof r["during"] === "string" ? { during: r["during"] } : {}),
    ...(typeof r["command"] === "string" ? { command: r["command"] } : {}),
    ...(typeof r["exitCode"] === "number" ? { exitCode: r["exitCode"] } : {}),
  };
}

/**
 * Why the native CPU kernels failed to build (at install or with build:native), or undefined
 * when the last build did not fail. For `bitnet info`. `file` is for tests.
 */
export function nativeBuildFailure(
  file: string = BUILD_FAILURE_FILE,
): NativeBuildFailure | undefined {
  const record = readBuildFailure(file);
  return record === undefined ? undefined : { at: record.at, error: record.error, log: record.log };
}

const REBUILD = "`pnpm --filter @bitnet-ts/kernels-cpu build:native`";

/** What to do about a failed build, from its first error line. */
function buildFix(error: string): string {
  if (/node_api\.h|node\.js headers|nodedir/i.test(error)) {
    return `install the Node.js headers (e.g. the nodejs-dev package, or set NODEDIR), then run ${REBUILD}`;
  }
  if (/python/i.test(error)) {
    return `install python3 (node-gyp needs it), then run ${REBUILD}`;
  }
  if (/\bmake\b/.test(error) && /not found/i.test(error)) {
    return `install make (e.g. build-essential), then run ${REBUILD}`;
  }
  if (/(g\+\+|c\+\+|clang\+\+|\bcc\b).*not found|not found.*(g\+\+|c\+\+|clang)/i.test(error)) {
    return `install a C++17 compiler (g++ ≥ 9 or clang ≥ 10), then run ${REBUILD}`;
  }
  return `fix the error above (a C++17 compiler, python3 and make are needed), then run ${REBUILD}`;
}

/** Options of {@link loadBindingFrom}. */
export interface LoadBindingOptions {
  /** The build failure record to explain a missing addon with (default {@link BUILD_FAILURE_FILE}). */
  readonly buildFailureFile?: string;
}

let cached: NativeBinding | undefined;

/** Where the loader looks, in order: a label for messages and a file (undefined: skipped). */
export type BindingCandidate = readonly [label: string, file: string | undefined];

/** The default search order: explicit path (option or env) → build/Release → prebuild. */
export function bindingCandidates(explicitPath?: string): BindingCandidate[] {
  return [
    ["explicit path", explicitPath ?? process.env["BITNET_KERNELS_CPU_PATH"]],
    ["build/Release", path.join(packageRoot, "build", "Release", "bitnet_kernels_cpu.node")],
    [
      "prebuild",
      path.join(
        packageRoot,
        "prebuilds",
        `${process.platform}-${process.arch}`,
        "bitnet_kernels_cpu.node",
      ),
    ],
  ];
}

/**
 * Loads the addon from the first candidate that works. Throws one KernelUnavailableError that
 * lists every attempt and the fix.
 */
export function loadBindingFrom(
  candidates: readonly BindingCandidate[],
  options: LoadBindingOptions = {},
): NativeBinding {
  const require = createRequire(import.meta.url);
  const attempts: string[] = [];
  for (const [label, file] of candidates) {
    if (file === undefined) {
      continue;
    }
    if (!fs.existsSync(file)) {
      attempts.push(`${label}: ${file} (not found)`);
      continue;
    }
    try {
      // require() reads "x/addon.node" as a package name and "./x" as relative to this module:
      // a path from the user (option or environment) means the working directory.
      const binding = require(path.resolve(file)) as NativeBinding;
      if (binding.abiVersion !== ABI_VERSION) {
        attempts.push(
          `${label}: ${file} (ABI ${binding.abiVersion}, expected ${ABI_VERSION}: stale build)`,
        );
        continue;
      }
      return binding;
    } catch (error) {
      attempts.push(`${label}: ${file} (${(error as Error).message.split("\n")[0]})`);
    }
  }
  const tried = `Tried:\n  ${attempts.join("\n  ") || "(no candidates)"}`;
  const failureFile = options.buildFailureFile ?? BUILD_FAILURE_FILE;
  const failure = readBuildFailure(failureFile);
  if (failure !== undefined) {
    const when = failure.during === "build" ? "" : " at install";
    const how = [
      failure.at && `at ${failure.at}`,
      failure.command && `\`${failure.command}\``,
      failure.exitCode !== undefined && `exit code ${failure.exitCode}`,
    ].filter(Boolean);
    throw new KernelUnavailableError(
      `the native CPU kernels failed to build${when}: ${failure.error}\nFix: ${buildFix(failure.error)}, or set BITNET_KERNELS_CPU_PATH to a built bitnet_kernels_cpu.node. Meanwhile the "auto" backend falls back to the slow reference backend.\nBuild record: ${failureFile}${how.length > 0 ? ` (${how.join(", ")})` : ""}\n${tried}`,
    );
  }
  throw new KernelUnavailableError(
    `could not load the native CPU kernels - no usable addon.\n${tried}\nFix: run ${REBUILD} (needs python3, make and g++), or set BITNET_KERNELS_CPU_PATH to a built bitnet_kernels_cpu.node.`,
  );
}

/** The addon, found in the default order (cached unless an explicit path is given). */
export function loadBinding(explicitPath?: string): NativeBinding {
  if (cached !== undefined && explicitPath === undefined) {
    return cached;
  }
  const binding = loadBindingFrom(bindingCandidates(explicitPath));
  if (explicitPath === undefined) {
    cached = binding;
  }
  return binding;
}
