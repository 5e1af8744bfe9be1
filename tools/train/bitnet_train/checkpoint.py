"""
Hugging Face-style checkpoints: config.json, model.safetensors (float32), tokenizer.model,
tokenizer_config.json, the files `bitnet convert` reads. The safetensors file is written by
hand (an 8-byte header length, a JSON header, then the raw tensors) so that no package beyond
PyTorch is needed.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import torch

from .model import BitNetConfig, BitNetForCausalLM

_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
_TORCH = {v: k for k, v in _DTYPES.items()}


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        data = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)
    tmp.replace(path)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = bytearray(raw[8 + n + a:8 + n + b])
        out[name] = torch.frombuffer(buf, dtype=_TORCH[info["dtype"]]).reshape(info["shape"]).clone()
    return out


def save_checkpoint(model: BitNetForCausalLM, tokenizer_model: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.cfg
    (out / "config.json").write_text(json.dumps(cfg.hf_config(), indent=2) + "\n")
    write_safetensors(out / "model.safetensors", {k: v.float() for k, v in model.state_dict().items()})
    shutil.copyfile(tokenizer_model, out / "tokenizer.model")
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "LlamaTokenizer",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "add_bos_token": True,
                "add_eos_token": False,
                "model_max_length": cfg.max_position_embeddings,
            },
            indent=2,
        )
        + "\n"
    )


def load_checkpoint(folder: Path) -> BitNetForCausalLM:
    cfg = BitNetConfig.from_json((folder / "config.json").read_text())
    model = BitNetForCausalLM(cfg)
    model.load_state_dict(read_safetensors(folder / "model.safetensors"))
    return model.eval()
