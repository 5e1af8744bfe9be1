#!/usr/bin/env node
// `pnpm device:cuda:pack`: fills .cache/device-cuda/ (git-ignored) with what the GPU machine needs
// to run the CUDA checks, and nothing it cannot run. That machine has no Node.js, no npm and no
// network (see the package README, "Checking on a GPU"), so:
//   - the addon is built here with nvcc (GPU code required: the pack fails without it), and so is
//     the CPU backend's addon the checks compare against;
//   - test/device-check.ts and every package it imports are bundled into one file (no
//     node_modules travel);
//   - this machine's node binary travels xz-compressed (run.sh unpacks it with Python);
//   - models are generated there by the bundled fixture generator, never carried.
// Then, on the device: `bash .cache/device-cuda/run.sh "$OUT"` → $OUT/cuda-check.json.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import { build } from "esbuild";

const pkg = path.resolve(import.meta.dirname, "..");
const repo = path.resolve(pkg, "../..");
const out = path.join(repo, ".cache", "device-cuda");
fs.mkdirSync(out, { recursive: true });
const step = (what) => console.log(`device:cuda:pack: ${what}`);

step("building the CUDA addon");
const built = spawnSync(
  process.execPath,
  [path.join(pkg, "scripts/build-native.mjs"), "--strict"],
  {
    stdio: "inherit",
  },
);
const kind = fs.readFileSync(path.join(pkg, "build/Release/kind.txt"), "utf8");
if (built.status !== 0 || !kind.startsWith("cuda")) {
  console.error(
    `device:cuda:pack: the CUDA addon has no GPU code (${kind}); install the CUDA toolkit first`,
  );
  process.exit(1);
}
fs.copyFileSync(
  path.join(pkg, "build/Release/bitnet_kernels_cuda.node"),
  path.join(out, "bitnet_kernels_cuda.node"),
);
const cpuAddon = path.join(repo, "packages/kernels-cpu/build/Release/bitnet_kernels_cpu.node");
if (!fs.existsSync(cpuAddon)) {
  console.error("device:cuda:pack: the CPU addon is not built (pnpm install builds it)");
  process.exit(1);
}
fs.copyFileSync(cpuAddon, path.join(out, "bitnet_kernels_cpu.node"));

step("bundling the checks");
// engine-core's testing helpers import vitest for their describe* suites, which the checks do not
// use: an empty module stands in for it in the bundle.
const noVitest = path.join(out, "no-vitest.mjs");
fs.writeFileSync(
  noVitest,
  "const unavailable = () => { throw new Error('vitest is not part of the device bundle'); };\nexport const describe = unavailable, it = unavailable, expect = unavailable, beforeAll = unavailable, afterAll = unavailable, vi = unavailable;\n",
);
await build({
  entryPoints: [path.join(pkg, "test/device-check.ts")],
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  outfile: path.join(out, "device-check.mjs"),
  alias: { vitest: noVitest },
  // The server registers the WebGPU backend by a lazy import; its Dawn addon cannot travel in a
  // bundle, and the checks never ask for that backend.
  external: ["@bitnet-ts/kernels-webgpu", "webgpu"],
  conditions: ["source"],
  // Bundled ESM still has code that calls require() for Node's built-ins.
  banner: {
    js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
  },
  logLevel: "warning",
});

// The fixture generator reads LLaMA-3's vocabulary from this package's data file at run time.
const require = createRequire(path.join(repo, "tools/fixtures/package.json"));
const vocabPkg = path.dirname(require.resolve("llama3-tokenizer-js/package.json"));
const vocabOut = path.join(out, "node_modules", "llama3-tokenizer-js");
fs.mkdirSync(path.join(vocabOut, "src"), { recursive: true });
fs.copyFileSync(path.join(vocabPkg, "package.json"), path.join(vocabOut, "package.json"));
fs.copyFileSync(
  path.join(vocabPkg, "src/data-converted.js"),
  path.join(vocabOut, "src/data-converted.js"),
);

const nodeXz = path.join(out, "node.xz");
const stamp = path.join(out, "node.version");
if (!fs.existsSync(nodeXz) || fs.readFileSync(stamp, "utf8").trim() !== process.version) {
  step(`compressing ${process.execPath} (${process.version})`);
  const xz = spawnSync("sh", ["-c", `xz -T2 -6 -c "${process.execPath}" > "${nodeXz}"`], {
    stdio: "inherit",
  });
  if (xz.status !== 0) {
    console.error("device:cuda:pack: xz failed");
    process.exit(1);
  }
  fs.writeFileSync(stamp, `${process.version}\n`);
}

fs.writeFileSync(
  path.join(out, "run.sh"),
  `#!/usr/bin/env bash
# Runs the CUDA checks on the GPU machine from the repository root: bash .cache/device-cuda/run.sh "$OUT"
set -u
here="$(cd "$(dirname "$0")" && pwd)"
out="\${1:-\${OUT:-/tmp/cuda-check}}"
mkdir -p "$out"
node=/tmp/bitnet-node
if [ ! -x "$node" ]; then
  python3 -c "import lzma,shutil;shutil.copyfileobj(lzma.open('$here/node.xz'),open('$node','wb'))" && chmod +x "$node"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/nvidia-smi.csv" 2>&1
export BITNET_KERNELS_CUDA_PATH="$here/bitnet_kernels_cuda.node"
export BITNET_KERNELS_CPU_PATH="$here/bitnet_kernels_cpu.node"
# cuBLAS for the kernel table's bf16 baseline: the toolkit's, or the one PyTorch ships.
if [ -z "\${BITNET_CUBLAS_PATH:-}" ]; then
  torch_lib="$(python3 -c 'import os,torch;print(os.path.dirname(torch.__file__))' 2>/dev/null)"
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu "$torch_lib/lib" "$torch_lib/../nvidia/cublas/lib" "$torch_lib/../nvidia/cu13/lib"; do
    f="$(ls "$d"/libcublas.so* 2>/dev/null | head -n 1)"
    if [ -n "$f" ]; then export BITNET_CUBLAS_PATH="$f"; break; fi
  done
fi
"$node" "$here/device-check.mjs" "$out" "\${@:2}" 2>&1 | tee "$out/cuda-check.log"
status="\${PIPESTATUS[0]}"
# SANITIZE=memcheck|racecheck|synccheck|initcheck: then tiny-i2s's checks again under NVIDIA's
# compute-sanitizer (out-of-bounds and misaligned accesses, shared-memory races, barriers),
# whose report lands in $out/sanitize-<tool>.log.
sanitizer="$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2> /dev/null | head -n 1)"
if [ -n "\${SANITIZE:-}" ] && [ -z "$sanitizer" ]; then
  echo "SANITIZE=$SANITIZE: compute-sanitizer is not installed here" | tee -a "$out/cuda-check.log"
elif [ -n "\${SANITIZE:-}" ]; then
  mkdir -p "$out/sanitize"
  "$sanitizer" --tool "$SANITIZE" --error-exitcode 9 --print-limit 20 \\
    "$node" "$here/device-check.mjs" "$out/sanitize" --quick > "$out/sanitize-$SANITIZE.log" 2>&1
  sanitized=$?
  echo "compute-sanitizer --tool $SANITIZE: exit $sanitized (log: sanitize-$SANITIZE.log)" | tee -a "$out/cuda-check.log"
  if [ "$status" = 0 ] && [ "$sanitized" != 0 ]; then status="$sanitized"; fi
fi
exit "$status"
`,
);
fs.chmodSync(path.join(out, "run.sh"), 0o755);
let total = 0;
for (const f of fs.readdirSync(out, { recursive: true })) {
  const stat = fs.statSync(path.join(out, f));
  total += stat.isFile() ? stat.size : 0;
}
step(
  `${path.relative(repo, out)}: ${(total / 2 ** 20).toFixed(1)} MiB (the device tool carries at most 64 MiB)`,
);
console.log(
  'Run there (device tool, carry [".cache/device-cuda"]): bash .cache/device-cuda/run.sh "$OUT"',
);
