import { defineProject } from "vitest/config";

export default defineProject({
  resolve: { conditions: ["source"] },
  test: {
    name: "ops",
    include: ["src/**/*.test.ts"],
    setupFiles: ["../../vitest.setup.ts"],
    testTimeout: 300_000,
  },
});
