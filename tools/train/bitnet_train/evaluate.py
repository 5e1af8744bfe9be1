"""
Evaluates a checkpoint the way the engine is evaluated, and writes golden data for it.

    python3 -m bitnet_train.evaluate --checkpoint runs/cpu/checkpoint --text runs/cpu/heldout.txt \\
        --ctx 128 --out golden/

Perplexity follows llama-perplexity (and `bitnet perplexity`): the file is one token stream
with BOS first, cut into chunks of --ctx tokens; each chunk starts from BOS in place of its first
token and only its second half is scored. golden.json holds that result, the token ids of the
first documents as SentencePiece encodes them, and the token windows whose float32 PyTorch
logits are in logits.f32 or logits.f16 ([positions, vocab], little-endian).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from .checkpoint import load_checkpoint
from .tokenizer import load_tokenizer


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--text", type=Path, required=True, help="held-out text (UTF-8)")
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--chunks", type=int, default=64, help="perplexity chunks to score at most")
    ap.add_argument("--windows", type=int, default=1, help="chunks whose logits are written")
    ap.add_argument("--positions", type=int, help="positions of each such chunk written (default all; "
                    "causal, so the first N are those of the chunk cut to N tokens)")
    ap.add_argument("--logits-dtype", choices=["f32", "f16"], default="f32",
                    help="how logits are stored (f16 halves the file; its rounding alone is ~1e-5 nats of KL)")
    ap.add_argument("--tokenize-docs", type=int, default=200, help="documents whose token ids are written")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint)
    sp = load_tokenizer(args.checkpoint / "tokenizer.model")
    bos = model.cfg.bos_token_id
    text = args.text.read_text(encoding="utf-8")
    stream = [bos] + sp.encode(text)
    ctx = args.ctx
    n_chunks = min(args.chunks, len(stream) // ctx)
    if n_chunks == 0:
        raise SystemExit(f"{args.text} has {len(stream)} tokens, fewer than one chunk of {ctx}")
    first = ctx // 2
    nll, scored = 0.0, 0
    windows: list[list[int]] = []
    logits_rows: list[torch.Tensor] = []
    for c in range(n_chunks):
        chunk = list(stream[c * ctx:(c + 1) * ctx])
        chunk[0] = bos
        logits = model(torch.tensor([chunk]))[0].float()
        logp = logits.double().log_softmax(-1)
        for i in range(first, ctx - 1):
            nll -= logp[i, chunk[i + 1]].item()
            scored += 1
        if c < args.windows:
            keep = args.positions or ctx
            windows.append(chunk[:keep])
            logits_rows.append(logits[:keep])
    ppl = math.exp(nll / scored)
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in ("logits.f16", "logits.f32"):
        (args.out / stale).unlink(missing_ok=True)
    rows = torch.cat(logits_rows)
    if args.logits_dtype == "f16":
        rows.half().numpy().astype("<f2").tofile(args.out / "logits.f16")
    else:
        rows.numpy().astype("<f4").tofile(args.out / "logits.f32")
    docs = text.splitlines()[:args.tokenize_docs]
    golden = {
        "checkpoint": str(args.checkpoint),
        "text": args.text.name,
        "ctx": ctx,
        "chunks": n_chunks,
        "scored_tokens": scored,
        "perplexity": ppl,
        "vocab_size": model.cfg.vocab_size,
        "logits": f"logits.{args.logits_dtype}",
        "windows": windows,
        "tokenized": [{"text": d, "ids": sp.encode(d)} for d in docs],
    }
    (args.out / "golden.json").write_text(json.dumps(golden) + "\n")
    print(f"perplexity {ppl:.4f} over {scored} tokens ({n_chunks} chunks of {ctx}); "
          f"{len(windows)} logit windows and {len(docs)} tokenized documents → {args.out}")


if __name__ == "__main__":
    main()
