#!/usr/bin/env bash
# Prepares .dev/train/ for a training run on the GPU machine (which has PyTorch but no Node.js,
# no network and no dict-gcide): the cleaned corpus, Node's binary (xz) and the converter bundled
# into one file. Then, with the device tool:
#   run  command: bash tools/train/gpu/run.sh   carry: [".dev/train"]
set -euo pipefail
cd "$(dirname "$0")/../../.."
dest=.dev/train
mkdir -p "$dest"
grep -qx '/.dev/' .git/info/exclude 2>/dev/null || echo '/.dev/' >> .git/info/exclude
python=${BITNET_PYTHON:-/usr/bin/python3}
(cd tools/train && "$python" -m bitnet_train.data --write "../../$dest/corpus.json.gz")
[ -f "$dest/node.xz" ] || xz -T2 -6 -c "$(command -v node)" > "$dest/node.xz"
npx turbo run build --filter=@bitnet-ts/convert --output-logs=errors-only >/dev/null
(cd packages/convert && npx esbuild ../../tools/train/gpu/convert-entry.mjs --bundle --platform=node \
  --format=esm --conditions=import --outfile="../../$dest/convert.mjs" --log-level=warning)
du -sh "$dest"/*
