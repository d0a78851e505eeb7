"""The Python API behind the CLI: small composable calls."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .checkpoint import check_classes, checkpoint_dir, load_checkpoint, load_checkpoint_tokenizer
from .data import Dataset
from .devices import resolve_device
from .evaluate import evaluate


def evaluate_checkpoint(ckpt: str | Path, data: Dataset, split: str = "test", batch_size: int = 32,
                        mode: str = "hard", device: str | None = "cpu") -> dict[str, Any]:
    """``device``: auto | cpu | cuda[:N]. The result holds each example's prediction (``predictions``), so that
    two checkpoints evaluated on the same split can be compared pair by pair."""
    ckpt = checkpoint_dir(ckpt)
    model, cfg = load_checkpoint(ckpt, device=resolve_device(device))
    check_classes(ckpt, cfg, data)
    tokenizer = load_checkpoint_tokenizer(ckpt)
    metrics = evaluate(model, data.split(split), tokenizer, cfg["max_length"], batch_size, mode=mode, desc=split,
                       keep_predictions=True)
    return {"checkpoint": str(ckpt), "data": data.name, "split": split, **metrics}
