import { defineConfig } from "tsup";
import { baseConfig } from "../../tsup.config.base";

export default defineConfig({
  ...baseConfig,
  entry: ["src/soak-cli.ts", "src/replicas-cli.ts"],
  dts: false,
});
