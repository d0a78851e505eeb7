"""Defaults that come from the data: max length, batch size and epoch count (docs/design.md, "Data-driven
defaults"). Each is used only where the user gave no value, and the value used is what config.json records.

Why: the fixed defaults (64 tokens, batch 32, 3 epochs) were the short-snippet settings. On a CSV of long
documents they truncated every text to 64 tokens, and on 1,000 long reviews 3 epochs of batch 32 are 96 steps,
which left fine-tuning at chance (docs/results.md §1c: 63 steps of 16 stayed at 50 %; 625 steps of 8 reached
81 %). The rules below reproduce the settings measured to work on both built-in datasets.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ..data import Example

LENGTH_QUANTILE = 0.95  # the max length holds this share of the training texts untruncated
LENGTH_STEPS = (64, 128, 256, 384, 512)  # candidates, then doubling up to the model's positions
TOKENS_PER_BATCH = 4096  # batch size = this / max length, within BATCH_RANGE
BATCH_RANGE = (8, 32)
MIN_STEPS = 600  # fine-tuning epochs: enough for about this many optimiser steps, within EPOCH_RANGE
EPOCH_RANGE = (3, 10)
SAMPLE = 5000  # texts tokenised to estimate the length quantile (all of them below this)


def token_lengths(examples: list[Example], tokenizer: Any, limit: int = SAMPLE) -> torch.Tensor:
    """Untruncated token counts (special tokens included) of up to ``limit`` evenly spaced examples."""
    step = max(1, math.ceil(len(examples) / limit))
    chosen = examples[::step]
    texts = [e.text for e in chosen]
    pairs = [e.text_pair or "" for e in chosen] if any(e.text_pair is not None for e in chosen) else None
    enc = tokenizer(texts, pairs, truncation=False, padding=False, verbose=False, return_attention_mask=False,
                    return_token_type_ids=False)
    return torch.tensor([len(ids) for ids in enc["input_ids"]], dtype=torch.float64)


def auto_max_length(lengths: torch.Tensor, positions: int) -> int:
    """The smallest candidate length holding ``LENGTH_QUANTILE`` of the texts, at most ``positions``."""
    need = float(torch.quantile(lengths, LENGTH_QUANTILE)) if len(lengths) else 0.0
    candidates = list(LENGTH_STEPS)
    while candidates[-1] < positions:
        candidates.append(candidates[-1] * 2)
    for c in candidates:
        if c >= need:
            return min(c, positions)
    return positions


def auto_batch_size(max_length: int) -> int:
    """About ``TOKENS_PER_BATCH`` tokens a batch: 32 at 64-128 tokens, 16 at 256, 8 at 512 and beyond. Smaller
    batches of long texts give more optimiser steps for the same compute, which small long-text datasets need."""
    return max(BATCH_RANGE[0], min(BATCH_RANGE[1], TOKENS_PER_BATCH // max(1, max_length)))


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return max(1, math.ceil(n_train / batch_size))


def auto_epochs(n_train: int, batch_size: int) -> int:
    """Enough epochs for about ``MIN_STEPS`` optimiser steps, within ``EPOCH_RANGE`` (3 on a large set)."""
    return max(EPOCH_RANGE[0], min(EPOCH_RANGE[1], math.ceil(MIN_STEPS / steps_per_epoch(n_train, batch_size))))


def batch_size_for_init(init: str | Path) -> int | None:
    """``auto_batch_size`` of a fine-tuned run's max length (``train``'s default batch size); None when the run
    cannot be read (the trainer then reports what is wrong with it)."""
    from ..checkpoint import CheckpointError, checkpoint_dir, read_config
    try:
        cfg = read_config(checkpoint_dir(init))
    except (CheckpointError, OSError, ValueError):
        return None
    length = cfg.get("max_length") if isinstance(cfg, dict) else None
    return auto_batch_size(length) if isinstance(length, int) and length > 0 else None
