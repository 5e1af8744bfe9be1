import { defineConfig } from "tsup";
import { baseConfig } from "../../tsup.config.base";

// The contract suite ships as its own entry so importing the engine never pulls in vitest.
export default defineConfig({
  ...baseConfig,
  entry: { index: "src/index.ts", "testing/index": "src/testing/index.ts" },
  external: ["vitest"],
});
