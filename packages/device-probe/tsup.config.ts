import { defineConfig } from "tsup";
import { baseConfig } from "../../tsup.config.base";

// Two entries: index (Node: reads the OS) and browser (no Node builtin; the "browser" condition).
export default defineConfig({
  ...baseConfig,
  entry: { index: "src/index.ts", browser: "src/browser.ts" },
});
