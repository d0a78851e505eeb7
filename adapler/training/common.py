"""Pieces every trainer shares: optimisers, schedules, the epoch loop with resume, run directories."""
from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import CheckpointError, ensure_writable, read_config
from ..data import Dataset, Encoded, batches, encode
from ..progress import log, progress_bar


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def param_groups(params: Iterable[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict]:
    """AdamW groups; biases and LayerNorm weights get no decay (as HF create_optimizer)."""
    decay, no_decay = [], []
    for name, p in params:
        if not p.requires_grad:
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def linear_warmup(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float = 0.06,
                  start_step: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = max(1, int(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        step += start_step
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class TrainData:
    """Tokenised splits; train keeps example ids so per-example targets (saliency) can be looked up."""
    train: Encoded
    dev: list
    max_length: int

    @classmethod
    def make(cls, data: Dataset, tokenizer, max_length: int) -> "TrainData":
        train = encode(data.train, tokenizer, max_length)
        if train.n_truncated:
            log(f"{train.n_truncated} of {len(data.train)} training texts were truncated to {max_length} tokens")
        return cls(train, data.dev, max_length)

    def epoch(self, batch_size: int, seed: int) -> list[Encoded]:
        return list(batches(self.train, batch_size, shuffle=True, seed=seed))


def prepare_out_dir(out: str | Path, overwrite: bool, resume: bool) -> tuple[Path, dict | None]:
    """(out dir, existing run state or None). Refuses to clobber a finished or foreign directory."""
    out = Path(out)
    state_file = out / "run_state.json"
    if resume and state_file.exists():
        return out, json.loads(state_file.read_text())
    if resume:
        raise CheckpointError(f"--resume: {state_file} not found; nothing to resume in {out}")
    ensure_writable(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    return out, None


def write_state(out: Path, state: dict[str, Any]) -> None:
    tmp = out / "run_state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(out / "run_state.json")


def train_epoch(model: nn.Module, batches_: list[Encoded], step_fn: Callable[[Encoded], dict[str, float]],
                desc: str) -> dict[str, float]:
    """Run ``step_fn`` on each batch; returns the mean of every logged value."""
    model.train()
    sums: dict[str, float] = {}
    for b in progress_bar(batches_, desc):
        logs = step_fn(b)
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + v
        if any(math.isnan(v) for v in logs.values()):
            raise FloatingPointError(f"loss became NaN ({logs}); lower the learning rate")
    return {k: v / max(1, len(batches_)) for k, v in sums.items()}


def load_init(init: str | Path) -> dict:
    """Config of a fine-tuned checkpoint passed as --init (the best epoch is its ``best/`` sub-directory)."""
    init = Path(init)
    best = init / "best"
    return read_config(best if best.exists() else init)


def init_path(init: str | Path) -> Path:
    init = Path(init)
    return init / "best" if (init / "best").exists() else init
