import * as fs from "node:fs";
import { fileURLToPath } from "node:url";
import { defineProject } from "vitest/config";

// Lavapipe from tools/lavapipe/setup.sh (software Vulkan), unless a driver is already chosen:
// set here, at config load, so `vitest run --project kernels-webgpu` finds an adapter without the
// test runner (the forked workers inherit process.env; Dawn reads it when it loads).
const lavapipeEnv = fileURLToPath(new URL("../../.cache/lavapipe/env.json", import.meta.url));
if (process.env.VK_DRIVER_FILES === undefined && fs.existsSync(lavapipeEnv)) {
  Object.assign(process.env, JSON.parse(fs.readFileSync(lavapipeEnv, "utf8")));
}

export default defineProject({
  resolve: { conditions: ["source"] },
  test: {
    name: "kernels-webgpu",
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    setupFiles: ["../../vitest.setup.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000,
  },
});
