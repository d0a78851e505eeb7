"""TR-BERT (Ye et al., 2021): policy networks at fixed selection points, trained by REINFORCE with a length
reward, then jointly with the encoder."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import register
from .base import Method


class TrBert(Method):
    name = "tr-bert"
    title = "TR-BERT"
    summary = "policy networks trained by reinforcement learning with a length reward"
    knob, knob_field = "alpha", "alpha"
    cli_options = {"trbert_batch_fill": "batch_fill", "trbert_len_denominator": "len_denominator"}
    target_control = ("alpha, the length-reward weight: the same controller as AdapLeR's phi on the sampled "
                      "actions' kept lengths, in the RL and joint stages")
    quick_options = {"k": 4}
    color = "tab:green"

    def selector_class(self):
        from ..selectors.tr_bert import PolicySelector
        return PolicySelector

    def config_class(self):
        from ..training.tr_bert import TrBertConfig
        return TrBertConfig

    def config(self, knob: float | None = None, epochs: int | None = None, lr: float | None = None,
               batch_size: int = 32, seed: int = 42, **options: Any):
        """``epochs``: the RL epochs; the joint stage then gets max(1, epochs // 2) (explicit options win)."""
        fields = {"batch_size": batch_size, "seed": seed, **({"lr": lr} if lr is not None else {}),
                  **({"rl_epochs": epochs, "joint_epochs": max(1, epochs // 2)} if epochs is not None else {})}
        return self._make(fields, options, knob)

    def train(self, data, init: str | Path, out: str | Path, cfg: Any, *, overwrite: bool = False,
              resume: bool = False, shared_dir: Path | None = None) -> Path:
        from ..training import tr_bert as trainer
        return trainer.train_tr_bert(data, init, out, cfg, overwrite=overwrite, resume=resume)


TR_BERT = register(TrBert())
