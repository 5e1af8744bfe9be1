import { defineConfig } from "tsup";
import { baseConfig } from "../../tsup.config.base";

// Two entries: index (Node: file paths, fs) and browser (no Node builtin; the "browser" condition).
export default defineConfig({
  ...baseConfig,
  entry: { index: "src/index.ts", browser: "src/browser.ts" },
});
