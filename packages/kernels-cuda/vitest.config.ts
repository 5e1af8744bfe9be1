import { defineProject } from "vitest/config";

export default defineProject({
  resolve: { conditions: ["source"] },
  test: {
    name: "kernels-cuda",
    include: ["src/**/*.test.ts"],
    // The host twins run the model's ops on one CPU thread, lane by lane: seconds per test.
    testTimeout: 300_000,
    setupFiles: ["../../vitest.setup.ts"],
  },
});
