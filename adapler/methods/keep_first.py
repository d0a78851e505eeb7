"""Keep-first: a static floor for the bench. Before the chosen layers each row keeps its first tokens ([CLS] and
what follows it) and drops the rest; nothing decides which tokens matter. A learned method that does not beat
it at the same FLOPs has learned nothing about the tokens.

Training is an optional short re-fine-tune of the encoder with the drop in place (``epochs``, default 1; 0
keeps the fine-tuned weights as they are). The speedup depends on the lengths only, so ``--target-speedup``
is solved, not controlled: the largest fraction whose dev FLOPs speedup is >= X (bisection), as for
PoWER-BERT's retention. The selector (``adapler/selectors/keep_first.py``) drops through ``token_drop``, so
the model exports to ``model.onnx`` / ``model.std.onnx`` like AdapLeR; there is no fused ORT graph.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, check_range
from . import register
from .base import Method

if TYPE_CHECKING:  # torch-heavy: imported where used (the CLI lists the registry at startup)
    from torch import Tensor

    from ..data import Dataset
    from ..flops import Dims


@dataclass
class KeepFirstConfig:
    fraction: float = 0.5  # the knob: share of the alive tokens each drop layer keeps (at least [CLS])
    tokens: int = 0  # > 0: keep this many tokens instead of a fraction
    layers: str = "2"  # comma-separated layers (0-based) before which tokens are dropped
    epochs: int = 1  # re-fine-tuning epochs with the drop in place; 0: the fine-tuned weights as they are
    batch_size: int = 32
    lr: float = 3e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    seed: int = 42
    target_speedup: float | None = None  # solve the fraction for this dev FLOPs speedup
    max_accuracy_drop: float = 1.0  # points below the fine-tuned dev accuracy that selection accepts

    def __post_init__(self) -> None:
        check_range("fraction (--knob for keep-first)", self.fraction, 0, 1, strict_lo=True)
        for name in ("tokens", "epochs"):
            check_range(name, getattr(self, name), 0)
        check_range("batch_size", self.batch_size, 1)
        check_range("lr", self.lr, 0, strict_lo=True)
        check_range("warmup_ratio", self.warmup_ratio, 0, 1)
        from ..training.target import check_target_fields
        try:
            self.layer_list()
        except ValueError:
            raise UsageError(f"layers must be comma-separated layer numbers like 2 or 1,3, got {self.layers!r}") from None
        check_target_fields(self.target_speedup, self.max_accuracy_drop)
        if self.target_speedup is not None and self.tokens:
            raise UsageError("--target-speedup solves the kept fraction; drop --set tokens= or --target-speedup")

    def layer_list(self) -> list[int]:
        return [int(v) for v in str(self.layers).split(",") if v.strip()]


def fraction_speedup(fraction: float, cfg: KeepFirstConfig, n: Tensor, dims: Dims) -> float:
    """Dev FLOPs speedup of ``fraction`` on rows of ``n`` tokens (exact: the kept lengths follow from n)."""
    from ..flops import dense_flops, pruned_flops
    from ..selectors.keep_first import KeepFirstSelector
    sel = KeepFirstSelector(dims.L, cfg.layer_list(), fraction, cfg.tokens or None)
    return float(dense_flops(n, dims).sum() / pruned_flops(n, sel.kept_lengths(n), dims, []).sum())


def fraction_for_speedup(cfg: KeepFirstConfig, n: Tensor, dims: Dims, target: float) -> float:
    """The largest fraction whose speedup on ``n`` is >= ``target`` (speedup falls as the fraction grows)."""
    lo, hi = 1e-6, 1.0
    if fraction_speedup(hi, cfg, n, dims) >= target:
        return hi
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fraction_speedup(mid, cfg, n, dims) >= target else (lo, mid)
    return lo


def train_keep_first(data: Dataset, init: str | Path, out: str | Path, cfg: KeepFirstConfig,
                     overwrite: bool = False, resume: bool = False, device: str | None = None,
                     precision: str | None = None) -> Path:
    """Re-fine-tune the fine-tuned run ``init`` with the first-tokens drop in place; ``out/best`` as for every
    method (target.py's selection rule)."""
    import torch

    from ..flops import Dims
    from ..progress import log
    from ..selectors.keep_first import KeepFirstSelector
    from ..training.auto import steps_per_epoch
    from ..training.common import TrainData, dev_lengths, linear_warmup, param_groups
    from ..training.distributed import TrainEnv
    from ..training.phased import selection_rule, setup_from_finetuned, with_selector
    from ..training.runner import Phase, Run
    from ..training.target import check_reachable, dims_of_config
    first = min(cfg.layer_list())
    env = TrainEnv.create(device, precision)

    def reachable(init_cfg: dict, lengths: Tensor) -> None:  # no predictor; layers before the first drop run whole
        check_reachable(cfg.target_speedup, lengths, dims_of_config(init_cfg), [], first_drop_layer=first)

    out, state, ckpt, ft_model, ft_cfg, tokenizer, fingerprint = setup_from_finetuned(
        data, init, out, cfg.seed, overwrite, resume, asdict(cfg), reachable if cfg.target_speedup else None, env)
    max_length = ft_cfg["max_length"]
    if max(cfg.layer_list()) >= ft_model.num_layers:
        raise UsageError(f"layers {cfg.layers} must lie in 0..{ft_model.num_layers - 1} for this backbone")
    run_cfg = cfg
    if cfg.target_speedup is not None:
        n = dev_lengths(data, tokenizer, max_length)
        fraction = fraction_for_speedup(cfg, n, Dims.of(ft_model), cfg.target_speedup)
        run_cfg = replace(cfg, fraction=fraction)
        log(f"keep-first: fraction {fraction:.4f} for {cfg.target_speedup:g}x "
            f"({fraction_speedup(fraction, run_cfg, n, Dims.of(ft_model)):.2f}x on dev)")
    selector = KeepFirstSelector(ft_model.num_layers, run_cfg.layer_list(), run_cfg.fraction, run_cfg.tokens or None)
    model = with_selector(ft_model, selector)
    extra = {"stage": "keep-first", "data": data.name, "pair": data.is_pair, "source_model": ft_cfg.get("source_model"),
             "init_checkpoint": str(ckpt), "keep_first": asdict(run_cfg)}
    rule = selection_rule(init, ft_model, ft_cfg, data, tokenizer, cfg.max_accuracy_drop, cfg.target_speedup, env)
    run = Run(out, model, data, tokenizer, max_length, "keep-first", asdict(cfg), extra, env, fingerprint, rule)
    run.resume_from(state)
    td = TrainData.make(data, tokenizer, max_length)
    steps = steps_per_epoch(len(data.train), cfg.batch_size * env.world_size)

    def retrain(start_epoch: int):
        named = list(run.model.named_parameters())
        opt = torch.optim.AdamW(param_groups(named, cfg.weight_decay), lr=cfg.lr)
        sched = linear_warmup(opt, steps * cfg.epochs, cfg.warmup_ratio, start_epoch * steps)
        # soft mode masks the dropped tokens instead of moving them: the same logits, and differentiable
        return run.cross_entropy_step(named, opt, sched, mode="soft")

    phases = [Phase("retrain", cfg.epochs, retrain, lambda row: row.update(fraction=run_cfg.fraction))]
    return run.run(phases, td, cfg.batch_size, cfg.seed)


class KeepFirst(Method):
    name = "keep-first"
    title = "keep-first"
    summary = "static floor: keep the first tokens of each row before the chosen layers"
    knob, knob_field = "fraction", "fraction"
    target_control = "the kept fraction, solved: the largest one whose dev speedup is >= X (bisection)"
    quick_options = {"epochs": 1}
    color = "tab:gray"

    def selector_class(self):
        from ..selectors.keep_first import KeepFirstSelector
        return KeepFirstSelector

    def config_class(self):
        return KeepFirstConfig

    def config(self, knob: float | None = None, epochs: int | None = None, lr: float | None = None,
               batch_size: int = 32, seed: int = 42, **options: Any) -> KeepFirstConfig:
        fields = {"batch_size": batch_size, "seed": seed, **({"epochs": epochs} if epochs is not None else {}),
                  **({"lr": lr} if lr is not None else {})}
        return self._make(fields, options, knob)

    def train(self, data, init: str | Path, out: str | Path, cfg: KeepFirstConfig, *, overwrite: bool = False,
              resume: bool = False, shared_dir: Path | None = None) -> Path:
        return train_keep_first(data, init, out, cfg, overwrite=overwrite, resume=resume)


KEEP_FIRST = register(KeepFirst())
