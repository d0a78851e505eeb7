"""Baseline trainers, one entry point: PoWER-BERT (power_bert.py) and TR-BERT (tr_bert.py).

Both are phased, resumable runs (phased.py) starting from a fine-tuned run directory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data import Dataset
from .power_bert import COLLAPSE_FRACTION, PowerBertConfig, drift_budget, train_power_bert
from .tr_bert import TrBertConfig, compute_heuristics, train_tr_bert

__all__ = ["KNOBS", "KNOB_FIELDS", "COLLAPSE_FRACTION", "PowerBertConfig", "TrBertConfig", "baseline_config", "compute_heuristics",
           "drift_budget", "train_baseline", "train_power_bert", "train_tr_bert"]

KNOBS = {"power-bert": "lambda", "tr-bert": "alpha", "adapler": "phi"}
KNOB_FIELDS = {"power-bert": "lam", "tr-bert": "alpha", "adapler": "phi"}  # the config field --knob sets


def baseline_config(method: str, knob: float | None = None, epochs: int | None = None, lr: float | None = None,
                    batch_size: int = 32, seed: int = 42, **options: Any) -> PowerBertConfig | TrBertConfig:
    """The config ``train_baseline`` trains ``method`` with (arguments as there)."""
    common = {"batch_size": batch_size, "seed": seed, **({"lr": lr} if lr is not None else {})}
    if method == "power-bert":
        # explicit options win over what ``epochs`` implies (one dict, so no duplicate keywords)
        return PowerBertConfig(**{**common, **({"retrain_epochs": epochs} if epochs is not None else {}), **options,
                                  **({"lam": knob} if knob is not None else {})})
    if method == "tr-bert":
        ep = {"rl_epochs": epochs, "joint_epochs": max(1, epochs // 2)} if epochs is not None else {}
        return TrBertConfig(**{**common, **ep, **options, **({"alpha": knob} if knob is not None else {})})
    raise ValueError(f"unknown baseline {method!r}; use power-bert or tr-bert")


def train_baseline(method: str, data: Dataset, init: str | Path, out: str | Path, knob: float | None = None,
                   epochs: int | None = None, lr: float | None = None, batch_size: int = 32, seed: int = 42,
                   overwrite: bool = False, resume: bool = False, **options: Any) -> Path:
    """Train ``method`` (power-bert | tr-bert) from the fine-tuned run ``init``; returns ``out``.

    ``knob``: PoWER-BERT LAMBDA / TR-BERT alpha. ``epochs``: PoWER-BERT re-training epochs / TR-BERT RL
    epochs (the joint stage then gets max(1, epochs // 2)). ``lr``: the BERT learning rate. ``options``:
    any other field of ``PowerBertConfig`` / ``TrBertConfig``.
    """
    cfg = baseline_config(method, knob, epochs, lr, batch_size, seed, **options)
    trainer = train_power_bert if method == "power-bert" else train_tr_bert
    return trainer(data, init, out, cfg, overwrite=overwrite, resume=resume)
