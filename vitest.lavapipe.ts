/**
 * Puts lavapipe's environment (tools/lavapipe/setup.sh: Mesa's software Vulkan) into process.env
 * at vitest config load, unless a Vulkan driver is already chosen. It must happen in the main
 * process: forked test workers inherit it, and the dynamic loader reads LD_LIBRARY_PATH only when
 * a process starts.
 */
import * as fs from "node:fs";
import { fileURLToPath } from "node:url";

export function useLavapipe(): void {
  const envFile = fileURLToPath(new URL("./.cache/lavapipe/env.json", import.meta.url));
  if (process.env["VK_DRIVER_FILES"] === undefined && fs.existsSync(envFile)) {
    Object.assign(process.env, JSON.parse(fs.readFileSync(envFile, "utf8")));
  }
}
