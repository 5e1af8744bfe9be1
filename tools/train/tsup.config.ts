import { defineConfig } from "tsup";
import { baseConfig } from "../../tsup.config.base";

export default defineConfig({
  ...baseConfig,
  entry: ["src/compare-cli.ts", "src/train-cli.ts"],
  dts: false,
});
