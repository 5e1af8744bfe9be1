import { defineConfig } from "tsup";
import { baseConfig } from "../../tsup.config.base";

// "./rules" is its own entry: the kernel-count rules without the Node-only verifier (node:fs,
// node:crypto), so engine-core's reference backend stays importable in browsers.
export default defineConfig({
  ...baseConfig,
  entry: { index: "src/index.ts", rules: "src/rules.ts" },
});
