import { defineConfig } from "tsup";
import { baseConfig } from "../../tsup.config.base";

export default defineConfig({
  ...baseConfig,
  entry: ["src/tokenizer.ts", "src/server.ts", "src/prompt-cache.ts", "src/speculative.ts"],
  dts: false,
});
