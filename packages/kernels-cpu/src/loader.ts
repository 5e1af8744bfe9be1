/**
 * Finds and loads the compiled addon. Order: an explicit path (option or BITNET_KERNELS_CPU_PATH)
 * → a prebuilt binary for this platform → build/Release. On failure, one error lists every
 * attempt and the fix.
 */
import { createRequire } from "node:module";
import * as fs from "node:fs";
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

let cached: NativeBinding | undefined;

export function loadBinding(explicitPath?: string): NativeBinding {
  if (cached !== undefined && explicitPath === undefined) {
    return cached;
  }
  const require = createRequire(import.meta.url);
  const attempts: string[] = [];
  const candidates: [string, string | undefined][] = [
    ["explicit path", explicitPath ?? process.env["BITNET_KERNELS_CPU_PATH"]],
    ["prebuild", path.join(packageRoot, "prebuilds", `${process.platform}-${process.arch}`, "bitnet_kernels_cpu.node")],
    ["build/Release", path.join(packageRoot, "build", "Release", "bitnet_kernels_cpu.node")],
  ];
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
      if (binding.abiVersion !== 1) {
        attempts.push(`${label}: ${file} (ABI ${binding.abiVersion}, expected 1: stale build)`);
        continue;
      }
      if (explicitPath === undefined) {
        cached = binding;
      }
      return binding;
    } catch (error) {
      attempts.push(`${label}: ${file} (${(error as Error).message.split("\n")[0]})`);
    }
  }
  throw new KernelUnavailableError(
    `could not load the native CPU kernels - no usable addon.\nTried:\n  ${attempts.join("\n  ")}\nFix: run \`pnpm --filter @bitnet-ts/kernels-cpu build:native\` (needs python3, make and g++), or set BITNET_KERNELS_CPU_PATH to a built bitnet_kernels_cpu.node.`,
  );
}
