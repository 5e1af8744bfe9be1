"""
BitNet b1.58 in PyTorch: the forward pass of the released 2B-4T architecture (arch
`bitnet-b1.58`), trainable with straight-through estimators.

Every projection is a BitLinear: absmean ternary weights with one scale per tensor and
per-token absmax int8 activations, both fake-quantized in float so that gradients pass
through unchanged (straight-through). Around them: RMSNorm before attention and FFN, a
sub-norm before the output and down projections, NEOX (rotate-half) RoPE, grouped-query
attention, a gated squared-ReLU FFN, tied embeddings, no biases.

The eval-mode forward is the reference the inference engine is checked against, so the
quantizers reproduce the converter's arithmetic: the weight mean is summed in float64 and
rounded to float32, the scales and products are float32, rounding is half to even.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class BitNetConfig:
    vocab_size: int = 8000
    hidden_size: int = 512
    intermediate_size: int = 1536
    num_hidden_layers: int = 8
    num_attention_heads: int = 8
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512
    rms_norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    initializer_range: float = 0.02
    bos_token_id: int = 1
    eos_token_id: int = 2

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def hf_config(self) -> dict:
        """config.json as microsoft/bitnet-b1.58-2B-4T-bf16 writes it (online quantization)."""
        c = asdict(self)
        c.update(
            architectures=["BitNetForCausalLM"],
            model_type="bitnet",
            hidden_act="relu2",
            tie_word_embeddings=True,
            torch_dtype="float32",
            use_cache=True,
            attention_bias=False,
            attention_dropout=0.0,
            quantization_config={
                "quant_method": "bitnet",
                "linear_class": "autobitlinear",
                "quantization_mode": "online",
            },
        )
        return c

    @staticmethod
    def from_json(text: str) -> "BitNetConfig":
        raw = json.loads(text)
        fields = BitNetConfig.__dataclass_fields__
        return BitNetConfig(**{k: v for k, v in raw.items() if k in fields})


def weight_quant(w: torch.Tensor) -> torch.Tensor:
    """Absmean ternarization, dequantized: clamp(round(W·s), -1, 1) / s, s = 1/max(mean|W|, 1e-5)."""
    mean = (w.detach().double().abs().sum() / w.numel()).float()
    s = 1.0 / mean.clamp(min=1e-5)
    return (w * s).round().clamp(-1, 1) / s


def act_quant(x: torch.Tensor) -> torch.Tensor:
    """Per-token absmax int8, dequantized: clamp(round(x·s), -128, 127) / s, s = 127/max|x|."""
    s = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    return (x * s).round().clamp(-128, 127) / s


class BitLinear(nn.Linear):
    """A bias-free linear layer that sees ternary weights and int8 activations."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Straight-through: the forward sees the quantized values, the backward the identity.
        xq = x + (act_quant(x) - x).detach()
        wq = self.weight + (weight_quant(self.weight) - self.weight).detach()
        return F.linear(xq, wq)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(cfg: BitNetConfig, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    half = cfg.head_dim // 2
    inv = cfg.rope_theta ** (-torch.arange(half, dtype=torch.float64, device=device) * 2 / cfg.head_dim)
    ang = torch.arange(n, dtype=torch.float64, device=device)[:, None] * inv[None, :]
    return ang.cos().float(), ang.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """NEOX / rotate-half RoPE on [B, H, T, D]: pairs (i, i + D/2)."""
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: BitNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, hd = cfg.hidden_size, cfg.head_dim
        self.q_proj = BitLinear(d, cfg.num_attention_heads * hd)
        self.k_proj = BitLinear(d, cfg.num_key_value_heads * hd)
        self.v_proj = BitLinear(d, cfg.num_key_value_heads * hd)
        self.o_proj = BitLinear(cfg.num_attention_heads * hd, d)
        self.attn_sub_norm = RMSNorm(d, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        b, t, _ = x.shape
        hd = cfg.head_dim
        q = self.q_proj(x).view(b, t, cfg.num_attention_heads, hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, cfg.num_key_value_heads, hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, cfg.num_key_value_heads, hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        group = cfg.num_attention_heads // cfg.num_key_value_heads
        k = k.repeat_interleave(group, dim=1)  # q head j reads kv head floor(j / group)
        v = v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
        o = scores.softmax(dim=-1) @ v
        o = o.transpose(1, 2).reshape(b, t, cfg.num_attention_heads * hd)
        return self.o_proj(self.attn_sub_norm(o))


class MLP(nn.Module):
    def __init__(self, cfg: BitNetConfig) -> None:
        super().__init__()
        self.gate_proj = BitLinear(cfg.hidden_size, cfg.intermediate_size)
        self.up_proj = BitLinear(cfg.hidden_size, cfg.intermediate_size)
        self.down_proj = BitLinear(cfg.intermediate_size, cfg.hidden_size)
        self.ffn_sub_norm = RMSNorm(cfg.intermediate_size, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = F.relu(self.gate_proj(x)).square() * self.up_proj(x)
        return self.down_proj(self.ffn_sub_norm(m))


class Layer(nn.Module):
    def __init__(self, cfg: BitNetConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class Inner(nn.Module):
    """Named `model` inside BitNetForCausalLM so the state dict keys are the Hugging Face ones."""

    def __init__(self, cfg: BitNetConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class BitNetForCausalLM(nn.Module):
    def __init__(self, cfg: BitNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = Inner(cfg)
        self.apply(self._init)

    def _init(self, m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=self.cfg.initializer_range)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, vocab] for token ids [B, T] (positions 0..T-1, causal)."""
        t = ids.shape[1]
        cos, sin = rope_tables(self.cfg, t, ids.device)
        mask = torch.full((t, t), float("-inf"), device=ids.device).triu(1)
        h = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            h = layer(h, cos, sin, mask)
        return self.model.norm(h) @ self.model.embed_tokens.weight.T  # tied head

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
