import { defineProject } from "vitest/config";
import { useLavapipe } from "../../vitest.lavapipe.ts";

// The WebGPU cross-validation runs on lavapipe where there is no GPU driver.
useLavapipe();

export default defineProject({
  resolve: { conditions: ["source"] },
  test: {
    name: "crossval",
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    setupFiles: ["../../vitest.setup.ts"],
    // Model-dependent tests run real forward passes on the reference backend.
    testTimeout: 120_000,
  },
});
