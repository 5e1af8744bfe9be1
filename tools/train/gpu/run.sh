#!/usr/bin/env bash
# The training run on the GPU machine (prepared by prepare.sh; see tools/train/README.md):
# trains the default preset, converts the checkpoint to I2_S with the bundled converter, records
# PyTorch's logits and perplexity on held-out text, and leaves in $OUT what comes back (at most
# 8 files of 16 MiB): the GGUF, metrics.json, golden.json, logits.f32, heldout.txt, train.log.
# PRESET=cpu|micro and OUT=/some/dir rehearse it on any machine.
set -euo pipefail
cd "$(dirname "$0")/../../.."
preset=${PRESET:-default}
out=${OUT:?OUT must name the folder whose files come back}
dev=.dev/train
run=$(mktemp -d)
export PYTHONUNBUFFERED=1
node=$run/node
python3 -c "import lzma,shutil,sys;shutil.copyfileobj(lzma.open(sys.argv[1]),open(sys.argv[2],'wb'))" "$dev/node.xz" "$node"
chmod +x "$node"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
corpus=()
[ "$preset" = default ] && corpus=(--corpus "$dev/corpus.json.gz")
(cd tools/train && python3 -m bitnet_train.train --preset "$preset" "${corpus[@]}" --out "$run/out") 2>&1 | tee "$out/train.log"
"$node" "$dev/convert.mjs" "$run/out/checkpoint" "$out/model-i2_s.gguf" i2_s
ctx=$(python3 -c "import json,sys;print(min(256, json.load(open(sys.argv[1]))['config']['max_position_embeddings']))" "$run/out/metrics.json")
(cd tools/train && python3 -m bitnet_train.evaluate --checkpoint "$run/out/checkpoint" --text "$run/out/heldout.txt" \
  --ctx "$ctx" --chunks 64 --windows 1 --positions 24 --out "$run/golden") | tee -a "$out/train.log"
cp "$run/out/metrics.json" "$run/out/heldout.txt" "$run/golden/golden.json" "$run/golden/logits.f32" "$out/"
ls -la "$out"
