import { defineProject } from "vitest/config";
import { LongestFirstSequencer } from "../../vitest.sequencer.ts";

export default defineProject({
  resolve: { conditions: ["source"] },
  test: {
    name: "kernels-cpu",
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    setupFiles: ["../../vitest.setup.ts"],
    // Limits for a busy machine: the suite runs two test files at once (scripts/test.mjs), and
    // vitest's defaults (5 s a test, 10 s a hook) assume a machine to itself.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Used when this package runs on its own (tools/arm64/run.mjs); the root config's otherwise.
    sequence: { sequencer: LongestFirstSequencer },
  },
});
