import { defineConfig } from "tsup";
import { baseConfig } from "../../tsup.config.base";

// node-llama-cpp is an optional dependency loaded at run time; never bundle it.
export default defineConfig({ ...baseConfig, external: ["node-llama-cpp"] });
