import { defineConfig } from "tsup";
import { baseConfig } from "../../tsup.config.base";

// splitting: each command is its own chunk, loaded when the command runs (see program.ts).
export default defineConfig({
  ...baseConfig,
  entry: ["src/bitnet.ts"],
  dts: false,
  splitting: true,
});
