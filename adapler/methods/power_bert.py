"""PoWER-BERT (Goyal et al., 2020): attention-significance top-k after each layer's attention, with a searched
per-layer retention configuration."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import register
from .base import Method


class PowerBert(Method):
    name = "power-bert"
    title = "PoWER-BERT"
    summary = "attention-significance top-k with a searched retention per layer"
    knob, knob_field = "lambda", "lam"
    cli_options = {"power_protect_cls": "protect_cls"}
    target_control = ("the retention configuration, solved: the searched retention scaled to the least pruned one "
                      "whose dev speedup is >= X (bisection), then re-trained")
    # PoWER-BERT's r can only fall by about lr_soft per step: 32 search steps need lr_soft 0.05; at 5e-3 the
    # configuration stays full length (docs/results.md, "make demo").
    quick_options = {"search_epochs": 1, "lr_soft": 0.05}
    color = "tab:orange"

    def selector_class(self):
        from ..selectors.power_bert import AttentionTopKSelector
        return AttentionTopKSelector

    def config_class(self):
        from ..training.power_bert import PowerBertConfig
        return PowerBertConfig

    def config(self, knob: float | None = None, epochs: int | None = None, lr: float | None = None,
               batch_size: int = 32, seed: int = 42, **options: Any):
        """``epochs``: the re-training epochs (explicit options win over it)."""
        fields = {"batch_size": batch_size, "seed": seed, **({"lr": lr} if lr is not None else {}),
                  **({"retrain_epochs": epochs} if epochs is not None else {})}
        return self._make(fields, options, knob)

    def train(self, data, init: str | Path, out: str | Path, cfg: Any, *, overwrite: bool = False,
              resume: bool = False, shared_dir: Path | None = None) -> Path:
        from ..training import power_bert as trainer
        return trainer.train_power_bert(data, init, out, cfg, overwrite=overwrite, resume=resume)


POWER_BERT = register(PowerBert())
