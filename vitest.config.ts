import { defineConfig } from "vitest/config";
import { LongestFirstSequencer } from "./vitest.sequencer.ts";

export default defineConfig({
  test: {
    projects: ["packages/*", "apps/*", "tools/*"],
    sequence: { sequencer: LongestFirstSequencer },
  },
});
