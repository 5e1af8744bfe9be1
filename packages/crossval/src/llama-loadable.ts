import * as path from "node:path";
import { readGgufFileSync } from "@bitnet-ts/gguf";
import { LlamaCannotLoadError } from "./errors";

/** Tensor types that this engine reads and mainline llama.cpp (node-llama-cpp's build) does not. */
const NOT_IN_LLAMA_CPP: ReadonlySet<string> = new Set(["I2_S"]);

/**
 * Throws {@link LlamaCannotLoadError} when llama.cpp could not load the GGUF file at `modelPath`
 * because of its tensor types, before anything is loaded: llama.cpp itself only logs "failed to
 * read tensor info" and fails. Reads the header only.
 */
export function assertLlamaCanLoad(modelPath: string): void {
  const types = new Set(
    readGgufFileSync(modelPath)
      .tensors.map((t) => t.type.name)
      .filter((name) => NOT_IN_LLAMA_CPP.has(name)),
  );
  if (types.size > 0) {
    throw new LlamaCannotLoadError(path.basename(modelPath), [...types]);
  }
}
