"""Quantization-aware training of small BitNet b1.58 models (the 2B-4T architecture)."""
