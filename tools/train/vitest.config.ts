import { defineProject } from "vitest/config";

export default defineProject({
  resolve: { conditions: ["source"] },
  test: {
    name: "train",
    include: ["src/**/*.test.ts"],
    setupFiles: ["../../vitest.setup.ts"],
    testTimeout: 600_000,
  },
});
