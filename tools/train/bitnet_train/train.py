"""
One command trains: corpus → SentencePiece tokenizer → quantization-aware training → a Hugging
Face-style checkpoint, with the loss curve in metrics.json.

    python3 -m bitnet_train.train --preset default --out runs/default     # the GPU run
    python3 -m bitnet_train.train --preset cpu --out runs/cpu --minutes 6  # a CPU run

Deterministic: the corpus split, the tokenizer and the batch order depend only on the seed; on
the same hardware and PyTorch version the weights do too.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from .checkpoint import save_checkpoint
from .data import load_corpus, read_corpus
from .model import BitNetConfig, BitNetForCausalLM
from .tokenizer import load_tokenizer, train_tokenizer

# Shapes are multiples of 128 where the engine's ternary kernels want whole blocks.
PRESETS: dict[str, dict] = {
    # 28.3 M parameters (a 14 MB I2_S GGUF): the embedded default model, trained on the GPU machine.
    "default": dict(
        config=BitNetConfig(vocab_size=8192, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                            num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=512),
        seq_len=256, batch=128, lr=2e-3, warmup=200, minutes=6.0, corpus_bytes=None, tokenizer_docs=200_000,
        sources=("gcide", "wordnet"),
    ),
    # ~1 M parameters: trains for a few minutes on two CPU cores; proves the export and eval path.
    "cpu": dict(
        config=BitNetConfig(vocab_size=2048, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256),
        seq_len=128, batch=32, lr=4e-3, warmup=50, minutes=12.0, corpus_bytes=8_000_000, tokenizer_docs=40_000,
        sources=("gcide",),
    ),
    # Seconds: the CI test that runs the whole pipeline.
    "micro": dict(
        config=BitNetConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128),
        seq_len=64, batch=16, lr=5e-3, warmup=10, minutes=0.25, corpus_bytes=1_000_000, tokenizer_docs=5_000,
        sources=("gcide",),
    ),
}


def encode_stream(sp, docs: list[str], bos: int, eos: int) -> torch.Tensor:
    """All documents as one token stream, each as <s> text </s>."""
    ids: list[int] = []
    for pieces in sp.encode(docs):
        ids.append(bos)
        ids.extend(pieces)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def windows(stream: torch.Tensor, seq_len: int, count: int | None = None) -> torch.Tensor:
    """Non-overlapping [n, seq_len + 1] windows from the start of a stream."""
    n = (len(stream) - 1) // seq_len
    if count is not None:
        n = min(n, count)
    idx = torch.arange(n)[:, None] * seq_len + torch.arange(seq_len + 1)[None, :]
    return stream[idx]


@torch.no_grad()
def heldout_loss(model: BitNetForCausalLM, batches: torch.Tensor, device: torch.device) -> float:
    model.eval()
    total, count = 0.0, 0
    for chunk in batches.split(32):
        chunk = chunk.to(device)
        logits = model(chunk[:, :-1]).float()
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1), reduction="sum").item()
        count += chunk[:, 1:].numel()
    model.train()
    return total / count


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="default")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, help="training time budget (default: the preset's)")
    ap.add_argument("--steps", type=int, help="stop after this many steps instead of at the time budget")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--batch", type=int, help="sequences per step (default: the preset's)")
    ap.add_argument("--threads", type=int, help="CPU threads for PyTorch")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--corpus", type=Path, help="the corpus as `python3 -m bitnet_train.data --write` saved it "
                    "(for machines without dict-gcide; whole-dictionary presets only)")
    ap.add_argument("--amp", choices=["bf16", "off"], default="bf16",
                    help="bf16 autocast on CUDA (default); evaluation and export stay float32")
    args = ap.parse_args()
    preset = PRESETS[args.preset]
    cfg: BitNetConfig = preset["config"]
    minutes = args.minutes if args.minutes is not None else preset["minutes"]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    if args.corpus is not None:
        if preset["corpus_bytes"] is not None:
            raise SystemExit(f"--corpus holds every source whole; preset {args.preset} trains on a prefix of GCIDE")
        corpus = read_corpus(args.corpus)
    else:
        corpus = load_corpus(preset["corpus_bytes"], preset["sources"])
    (args.out / "heldout.txt").write_text("\n".join(corpus.heldout) + "\n", encoding="utf-8")
    tok_path = train_tokenizer(corpus.train, cfg.vocab_size, args.out / "tokenizer", preset["tokenizer_docs"])
    sp = load_tokenizer(tok_path)
    train_stream = encode_stream(sp, corpus.train, cfg.bos_token_id, cfg.eos_token_id)
    held_stream = encode_stream(sp, corpus.heldout, cfg.bos_token_id, cfg.eos_token_id)
    seq_len, batch = preset["seq_len"], args.batch or preset["batch"]
    held_batches = windows(held_stream, seq_len, 256)
    print(f"corpus: {len(corpus.train)} train / {len(corpus.heldout)} held-out documents, "
          f"{len(train_stream)} / {len(held_stream)} tokens ({time.time() - started:.0f} s)", flush=True)

    torch.manual_seed(args.seed)
    model = BitNetForCausalLM(cfg).to(device)
    print(f"model: {model.parameter_count():,} parameters, {cfg}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=preset["lr"], betas=(0.9, 0.95), eps=1e-8)
    order = torch.Generator().manual_seed(args.seed)
    amp = args.amp == "bf16" and device.type == "cuda"
    # The exported weights are the ones with the lowest held-out loss seen (a small corpus can be
    # overfitted within the budget on a fast GPU).
    best: tuple[float, int, dict] | None = None
    budget = minutes * 60
    train_start = time.time()
    # The schedule needs a length: estimated from the first steps' speed when training to a time budget.
    total_steps = args.steps or 10**9
    curve: list[dict] = []
    step = tokens = 0
    loss_avg = None
    while step < total_steps:
        starts = torch.randint(0, len(train_stream) - seq_len - 1, (batch,), generator=order)
        chunk = train_stream[starts[:, None] + torch.arange(seq_len + 1)[None, :]].to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total_steps, preset["lr"], preset["warmup"])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(chunk[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), chunk[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += batch * seq_len
        loss_avg = loss.item() if loss_avg is None else 0.95 * loss_avg + 0.05 * loss.item()
        elapsed = time.time() - train_start
        if args.steps is None and step == 20:
            total_steps = max(step + 1, int(step * budget / elapsed))
            print(f"schedule: {total_steps} steps in {minutes:g} min", flush=True)
        log_every = max(1, total_steps // 40)
        if step % log_every == 0 or step == total_steps:
            point = {"step": step, "tokens": tokens, "seconds": round(elapsed, 1), "train_loss": round(loss_avg, 4)}
            if (step // log_every) % 4 == 0 or step == total_steps:  # about ten held-out points a run
                point["heldout_loss"] = round(heldout_loss(model, held_batches, device), 4)
                if best is None or point["heldout_loss"] < best[0]:
                    best = (point["heldout_loss"], step, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
            curve.append(point)
            print(json.dumps(point), flush=True)

    final_held = heldout_loss(model, held_batches, device)
    exported_step = step
    if best is not None and best[0] < final_held:
        model.load_state_dict(best[2])
        final_held, exported_step = heldout_loss(model, held_batches, device), best[1]
    model = model.cpu().eval()
    save_checkpoint(model, tok_path, args.out / "checkpoint")
    metrics = {
        "preset": args.preset,
        "seed": args.seed,
        "config": asdict(cfg),
        "parameters": model.parameter_count(),
        "steps": step,
        "exported_step": exported_step,
        "tokens_seen": tokens,
        "train_tokens": len(train_stream),
        "heldout_tokens": int(held_batches[:, 1:].numel()),
        "final_train_loss": round(loss_avg or 0.0, 4),
        "final_heldout_loss": round(final_held, 4),
        "final_heldout_perplexity": round(math.exp(final_held), 3),
        "train_seconds": round(time.time() - train_start, 1),
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else f"{cpu_name()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "curve": curve,
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"done: held-out loss {final_held:.4f} (perplexity {math.exp(final_held):.2f}), "
          f"{tokens:,} tokens in {metrics['train_seconds']} s → {args.out / 'checkpoint'}", flush=True)


if __name__ == "__main__":
    main()
