"""AdapLeR (Modarressi et al., 2022): a Contribution Predictor per layer and a learned threshold eta / n."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import register
from .base import Method


class AdapLeR(Method):
    name = "adapler"
    title = "AdapLeR"
    summary = "Contribution Predictors + learned per-layer thresholds (the paper)"
    knob, knob_field = "phi", "phi"
    cli_options = {"gamma": "gamma", "eta_lr": "eta_lr", "cp_lr": "cp_lr", "preset": "preset", "init_weights": "init",
                   "theta": "theta", "length_loss": "length_loss", "kl_target_stopgrad": "kl_target_stopgrad"}
    target_control = ("phi, the length-loss weight: after every step phi *= exp(g e), e the relative error of the "
                      "batch's FLOPs speedup (KnobController)")
    fused_ort_graph = True  # one ContributionDrop node per layer
    contribution_drop_graph = True  # model.cd.onnx: the same node in the dynamo export (TensorRT)
    color = "tab:blue"

    def selector_class(self):
        from ..selectors.contribution import ContributionSelector
        return ContributionSelector

    def config_class(self):
        from ..training.train_adapler import AdapLeRConfig
        return AdapLeRConfig

    def config(self, knob: float | None = None, epochs: int | None = None, lr: float | None = None,
               batch_size: int = 32, seed: int = 42, **options: Any):
        fields = {"batch_size": batch_size, "seed": seed, **({"epochs": epochs} if epochs is not None else {}),
                  **({"lr": lr} if lr is not None else {})}
        return self._make(fields, options, knob)

    def train(self, data, init: str | Path, out: str | Path, cfg: Any, *, overwrite: bool = False,
              resume: bool = False, shared_dir: Path | None = None) -> Path:
        from ..training import train_adapler as trainer
        from ..training.common import SALIENCY_DIR
        # saliency targets depend on the data and the fine-tuned weights only: a sweep's runs share one cache
        cache = Path(shared_dir) / SALIENCY_DIR if shared_dir is not None else None
        return trainer.train_adapler(data, init, out, cfg, overwrite=overwrite, resume=resume, cache_dir=cache)


ADAPLER = register(AdapLeR())
