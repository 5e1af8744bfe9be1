import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "k8s",
    include: ["src/**/*.test.ts"],
    setupFiles: ["../../vitest.setup.ts"],
    testTimeout: 120_000,
  },
});
