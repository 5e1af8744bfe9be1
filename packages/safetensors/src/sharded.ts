import * as fs from "node:fs";
import * as path from "node:path";
import { SafetensorsError, SafetensorsErrorCode } from "./errors";
import { openSafetensors, type SafetensorsFile, type SafetensorsTensorInfo } from "./reader";

/**
 * A checkpoint folder's weights as one file: `model.safetensors`, or the shards named by
 * `model.safetensors.index.json` (`{"weight_map": {tensor: shard}}`).
 */
export function openShardedSafetensors(dir: string): SafetensorsFile {
  const single = path.join(dir, "model.safetensors");
  const indexFile = path.join(dir, "model.safetensors.index.json");
  if (!fs.existsSync(indexFile)) {
    if (!fs.existsSync(single)) {
      throw new SafetensorsError(
        SafetensorsErrorCode.IO,
        `could not find model.safetensors or model.safetensors.index.json in ${dir}.`,
      );
    }
    return openSafetensors(single);
  }
  let map: Record<string, unknown>;
  try {
    map = (
      JSON.parse(fs.readFileSync(indexFile, "utf8")) as { weight_map: Record<string, unknown> }
    ).weight_map;
    if (map === null || typeof map !== "object") {
      throw new Error("no weight_map object");
    }
  } catch (error) {
    throw new SafetensorsError(
      SafetensorsErrorCode.BAD_INDEX,
      `could not read ${indexFile} - ${(error as Error).message}.`,
      { cause: error },
    );
  }
  const shards = new Map<string, SafetensorsFile>();
  const owner = new Map<string, SafetensorsFile>();
  const tensors = new Map<string, SafetensorsTensorInfo>();
  try {
    for (const [name, shard] of Object.entries(map)) {
      if (
        typeof shard !== "string" ||
        shard.includes("/") ||
        shard.includes("\\") ||
        shard.startsWith(".")
      ) {
        throw new SafetensorsError(
          SafetensorsErrorCode.BAD_INDEX,
          `could not read ${indexFile} - tensor "${name}" maps to ${JSON.stringify(shard)}, not a file in the folder.`,
        );
      }
      let file = shards.get(shard);
      if (file === undefined) {
        file = openSafetensors(path.join(dir, shard));
        shards.set(shard, file);
      }
      const info = file.tensors.get(name);
      if (info === undefined) {
        throw new SafetensorsError(
          SafetensorsErrorCode.BAD_INDEX,
          `could not read ${indexFile} - tensor "${name}" is not in ${shard}.`,
        );
      }
      tensors.set(name, info);
      owner.set(name, file);
    }
  } catch (error) {
    for (const f of shards.values()) {
      f.close();
    }
    throw error;
  }
  return {
    metadata: {},
    tensors,
    read(name) {
      const file = owner.get(name);
      if (file === undefined) {
        throw new SafetensorsError(
          SafetensorsErrorCode.MISSING_TENSOR,
          `could not find tensor "${name}" in ${dir}.`,
        );
      }
      return file.read(name);
    },
    close() {
      for (const f of shards.values()) {
        f.close();
      }
    },
  };
}
