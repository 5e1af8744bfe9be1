// Which nvcc the CUDA build uses, shared by build-native.mjs and the build test.
import { spawnSync } from "node:child_process";
import * as path from "node:path";

/**
 * nvcc from NVCC, CUDA_HOME/CUDA_PATH, PATH or /usr/local/cuda, with its version; or the reason
 * there is none. BITNET_NO_CUDA=1 skips the CUDA build on purpose.
 */
export function findNvcc() {
  if (process.env.BITNET_NO_CUDA === "1") {
    return { reason: "BITNET_NO_CUDA=1 asked for no CUDA build" };
  }
  const candidates = [
    process.env.NVCC,
    ...[process.env.CUDA_HOME, process.env.CUDA_PATH]
      .filter(Boolean)
      .map((d) => path.join(d, "bin", "nvcc")),
    "nvcc",
    "/usr/local/cuda/bin/nvcc",
  ].filter(Boolean);
  for (const nvcc of candidates) {
    const r = spawnSync(nvcc, ["--version"], { encoding: "utf8" });
    const version = r.status === 0 ? /release (\d+)\.(\d+)/.exec(r.stdout) : null;
    if (version === null) {
      continue;
    }
    if (Number(version[1]) < 12) {
      return {
        reason: `${nvcc} is CUDA ${version[1]}.${version[2]}; the CUDA kernels need CUDA 12 or newer`,
      };
    }
    return { nvcc, version: `${version[1]}.${version[2]}` };
  }
  return {
    reason:
      "nvcc (the CUDA toolkit's compiler) was not found on PATH, in CUDA_HOME or in /usr/local/cuda",
  };
}
