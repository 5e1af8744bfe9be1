"""
A SentencePiece BPE tokenizer trained on the training documents, with LLaMA's settings: no
normalization (the engine applies none), whitespace kept as written, digits split, unknown
characters spelled as byte pieces, <unk>/<s>/</s> at ids 0/1/2.
"""

from __future__ import annotations

import os
from pathlib import Path

import sentencepiece as spm


def train_tokenizer(docs: list[str], vocab_size: int, out_prefix: Path, max_docs: int = 200_000) -> Path:
    # An evenly spaced subset in file order, not shuffled, so the same corpus gives the same model.
    step = max(1, len(docs) // max_docs)
    sample = docs[::step][:max_docs]
    text = out_prefix.with_suffix(".corpus.txt")
    text.write_text("\n".join(sample) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(text),
        model_prefix=str(out_prefix),
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=0.9999,
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        shuffle_input_sentence=False,
        max_sentence_length=16384,
        num_threads=min(16, os.cpu_count() or 1),
        minloglevel=2,
    )
    text.unlink()
    return out_prefix.with_suffix(".model")


def load_tokenizer(path: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(path))
