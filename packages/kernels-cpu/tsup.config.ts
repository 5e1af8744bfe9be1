import { defineConfig } from "tsup";
import { baseConfig } from "../../tsup.config.base";

// "./kernel-paths" is its own entry: the path names without the backend, so the CLI can validate
// --kernel-path at startup without loading it.
export default defineConfig({
  ...baseConfig,
  entry: { index: "src/index.ts", "kernel-paths": "src/kernel-paths.ts" },
});
