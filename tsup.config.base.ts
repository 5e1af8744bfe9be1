import type { Options } from "tsup";

/** Shared build settings: every package ships ESM + .d.ts built from src/index.ts. */
export const baseConfig: Options = {
  entry: ["src/index.ts"],
  format: ["esm"],
  target: "node20",
  platform: "node",
  dts: true,
  sourcemap: true,
  clean: true,
  splitting: false,
  treeshake: true,
};
