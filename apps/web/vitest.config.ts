import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "web",
    include: ["test/**/*.test.ts"],
    setupFiles: ["../../vitest.setup.ts"],
    // Real Chromium, real models: loads and generations take seconds (SwiftShader, reference backend).
    testTimeout: 300_000,
    hookTimeout: 300_000,
  },
});
