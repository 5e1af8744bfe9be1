/**
 * Finds and loads the CUDA addon, and says why not when it cannot: no CUDA toolkit when the
 * package was installed (build/unavailable.json), a failed compile
 * (build/native-build-failure.json), or an addon that does not load here.
 */
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { BitnetError } from "@bitnet-ts/errors";

/** The CUDA kernels cannot be used here; `message` says why and what to do. */
export class CudaUnavailableError extends BitnetError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("CUDA_UNAVAILABLE", message, options);
  }
}

/** A CUDA call failed on the device; the message names the call and CUDA's error. */
export class CudaError extends BitnetError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("CUDA_ERROR", message, options);
  }
}

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Where the build leaves the addon and its records (for tests: another root). */
export function addonFiles(root: string = packageRoot): {
  addon: string;
  unavailable: string;
  failure: string;
} {
  return {
    addon: path.join(root, "build", "Release", "bitnet_kernels_cuda.node"),
    unavailable: path.join(root, "build", "unavailable.json"),
    failure: path.join(root, "build", "native-build-failure.json"),
  };
}

function readRecord(file: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(fs.readFileSync(file, "utf8"));
    return typeof value === "object" && value !== null
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** Why the addon was not built, from the build's records; undefined when nothing says so. */
export function buildProblem(root: string = packageRoot): string | undefined {
  const files = addonFiles(root);
  const unavailable = readRecord(files.unavailable);
  if (typeof unavailable?.["reason"] === "string") {
    return `the CUDA kernels were not built: ${unavailable["reason"]}`;
  }
  const failure = readRecord(files.failure);
  if (typeof failure?.["error"] === "string") {
    return `the CUDA kernels failed to build (${failure["at"] ?? "unknown time"}): ${failure["error"]}`;
  }
  return undefined;
}

let cached: unknown;

/**
 * The addon's exports (untyped: src/native.ts types them). Explicit path: the argument or
 * BITNET_KERNELS_CUDA_PATH; else build/Release. Throws CudaUnavailableError with the reason.
 */
export function loadAddon(explicitPath?: string): unknown {
  const file = explicitPath ?? process.env["BITNET_KERNELS_CUDA_PATH"] ?? addonFiles().addon;
  if (explicitPath === undefined && cached !== undefined) {
    return cached;
  }
  if (!fs.existsSync(file)) {
    const why = buildProblem() ?? `${file} does not exist`;
    throw new CudaUnavailableError(
      `could not load the CUDA kernels - ${why}. Install the CUDA toolkit (12 or newer, nvcc on PATH or CUDA_HOME) and run \`pnpm --filter @bitnet-ts/kernels-cuda build:native\`.`,
    );
  }
  let addon: unknown;
  try {
    addon = createRequire(import.meta.url)(file);
  } catch (error) {
    throw new CudaUnavailableError(
      `could not load the CUDA kernels from ${file} - ${(error as Error).message}.`,
      { cause: error },
    );
  }
  if (explicitPath === undefined) {
    cached = addon;
  }
  return addon;
}
