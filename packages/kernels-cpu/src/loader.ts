/**
 * Finds and loads the compiled addon. Order: an explicit path (option or BITNET_KERNELS_CPU_PATH)
 * → a prebuilt binary for this platform → build/Release. On failure, one error lists every
 * attempt and the fix.
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
export const ABI_VERSION = 5;

let cached: NativeBinding | undefined;

/** Where the loader looks, in order: a label for messages and a file (undefined: skipped). */
export type BindingCandidate = readonly [label: string, file: string | undefined];

/** The default search order: explicit path (option or env) → prebuild → build/Release. */
export function bindingCandidates(explicitPath?: string): BindingCandidate[] {
  return [
    ["explicit path", explicitPath ?? process.env["BITNET_KERNELS_CPU_PATH"]],
    [
      "prebuild",
      path.join(
        packageRoot,
        "prebuilds",
        `${process.platform}-${process.arch}`,
        "bitnet_kernels_cpu.node",
      ),
    ],
    ["build/Release", path.join(packageRoot, "build", "Release", "bitnet_kernels_cpu.node")],
  ];
}

/**
 * Loads the addon from the first candidate that works. Throws one KernelUnavailableError that
 * lists every attempt and the fix.
 */
export function loadBindingFrom(candidates: readonly BindingCandidate[]): NativeBinding {
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
      const binding = require(file) as NativeBinding;
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
  throw new KernelUnavailableError(
    `could not load the native CPU kernels - no usable addon.\nTried:\n  ${attempts.join("\n  ") || "(no candidates)"}\nFix: run \`pnpm --filter @bitnet-ts/kernels-cpu build:native\` (needs python3, make and g++), or set BITNET_KERNELS_CPU_PATH to a built bitnet_kernels_cpu.node.`,
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
