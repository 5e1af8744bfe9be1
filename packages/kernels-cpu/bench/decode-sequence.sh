#!/usr/bin/env bash
# Builds and runs bench/decode-sequence.cc (see there): bash packages/kernels-cpu/bench/decode-sequence.sh avx2 2 30 ops
# With WEIGHTS_FILE or HEAD_FILE naming a GGUF, WEIGHTS_OFFSET and HEAD_OFFSET (unless given) come
# from its tensor table: where its first ternary tensor and its output head lie. The bench GGUFs
# put a tied head (token_embd.weight) first, so a file's first or last bytes are the wrong pages.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# Prints the byte offset of a GGUF's first ternary tensor (weights) or of its output head (head:
# output.weight, or token_embd.weight when tied); nothing for a file that is not a GGUF.
read_offset_js='
const [gguf, file, what] = process.argv.slice(1);
const { readGgufFileSync } = await import(gguf);
const { tensors } = readGgufFileSync(file);
const pick =
  what === "head"
    ? (tensors.find((t) => t.name === "output.weight") ?? tensors.find((t) => t.name === "token_embd.weight"))
    : tensors.filter((t) => ["I2_S", "TQ2_0", "TQ1_0"].includes(t.type.name)).sort((a, b) => a.fileOffset - b.fileOffset)[0];
if (pick !== undefined) console.log(pick.fileOffset);
'
gguf_offset() {  # gguf_offset <file> <weights|head>
  if [ "$(head -c 4 "$1" 2>/dev/null)" != GGUF ]; then return 0; fi
  node --input-type=module -e "$read_offset_js" "$here/../../gguf/dist/index.js" "$1" "$2" ||
    echo "decode-sequence.sh: could not read the tensor table of $1 (is packages/gguf built?); set WEIGHTS_OFFSET / HEAD_OFFSET" >&2
}
if [ -n "${WEIGHTS_FILE:-}" ] && [ -z "${WEIGHTS_OFFSET:-}" ]; then
  WEIGHTS_OFFSET="$(gguf_offset "$WEIGHTS_FILE" weights)"
  [ -n "$WEIGHTS_OFFSET" ] && export WEIGHTS_OFFSET
fi
if [ -n "${HEAD_FILE:-}" ] && [ -z "${HEAD_OFFSET:-}" ]; then
  HEAD_OFFSET="$(gguf_offset "$HEAD_FILE" head)"
  [ -n "$HEAD_OFFSET" ] && export HEAD_OFFSET
fi
exec bash "$here/build-run.sh" decode-sequence "$@"
