import { defineProject } from "vitest/config";
import { useLavapipe } from "../../vitest.lavapipe.ts";

// Lavapipe (software Vulkan) unless a driver is already chosen, so `vitest run --project
// kernels-webgpu` finds an adapter without the test runner.
useLavapipe();

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
