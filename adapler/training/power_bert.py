"""PoWER-BERT trainer (docs/method.md §2.6) from a fine-tuned run: ``search`` then ``retrain``.

``search`` is the Soft-Extract configuration search, ``retrain`` fine-tunes with Hard Extract.
Collapse guard against IBM/PoWER-BERT#10 (why it takes these steps: docs/method.md §2.7-2.8):
  1. a short search (``search_epochs``); a warning is logged when the drift budget D (``drift_budget``: the
     sum of r's learning rate over the search) is below 0.75 (r cannot fall far enough to shorten typical
     inputs) or above 3 (expect collapse); r is clipped to [0, 1] after every step;
  2. l_j = max(1, int(sum r_j)) made non-increasing over layers (``retention_from_r``);
  3. sum r_j per layer and the implied l_j are logged every epoch (history.json); if the deepest layer
     is left with fewer than ``COLLAPSE_FRACTION`` of the dev set's mean length the run says so
     (``"collapsed": true`` in the history row and in the checkpoint config) instead of hiding it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import Dataset, Encoded, encode
from ..errors import check_range
from ..progress import log
from ..selectors.power_bert import AttentionTopKSelector, retention_from_r
from .common import TrainData, linear_warmup, param_groups
from .phased import Phase, PhasedRun, setup_from_finetuned, with_selector

COLLAPSE_FRACTION = 0.25


@dataclass
class PowerBertConfig:
    """Defaults calibrated on all-MiniLM-L6-v2, max length 64, vader-movies (docs/results.md §2a, "PoWER-BERT
    calibration").

    ``lam`` (LAMBDA) is the trade-off knob; its penalty gradient on r_j[k] is LAMBDA * j whatever the max
    length, so it needs no rescaling with length. ``lr_soft`` sets the drift budget (docs/method.md §2.7):
    for a training set n times larger, divide it by n.
    """
    lam: float = 1e-3  # LAMBDA, the knob
    search_epochs: int = 2
    retrain_epochs: int = 2
    batch_size: int = 32
    lr: float = 3e-5  # LR_BERT
    lr_soft: float = 5e-3  # LR_SOFT_EXTRACT
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    protect_cls: bool = False
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("search_epochs", "retrain_epochs"):
            check_range(name, getattr(self, name), 0)
        check_range("batch_size", self.batch_size, 1)
        for name in ("lr", "lr_soft"):
            check_range(name, getattr(self, name), 0, strict_lo=True)
        for name in ("lam", "weight_decay"):
            check_range(name, getattr(self, name), 0)
        check_range("warmup_ratio", self.warmup_ratio, 0, 1)


def drift_budget(lr: float, total_steps: int, warmup_ratio: float) -> float:
    """Sum of the learning rate over ``linear_warmup``'s schedule: the most an Adam-driven r can move."""
    warmup = max(1, int(total_steps * warmup_ratio))
    return lr * sum((s + 1) / warmup if s < warmup else max(0.0, (total_steps - s) / max(1, total_steps - warmup))
                    for s in range(total_steps))


def train_power_bert(data: Dataset, init: str | Path, out: str | Path, cfg: PowerBertConfig,
                     overwrite: bool = False, resume: bool = False) -> Path:
    out, state, ckpt, ft_model, ft_cfg, tokenizer, fingerprint = setup_from_finetuned(
        data, init, out, cfg.seed, overwrite, resume, asdict(cfg))
    max_length = ft_cfg["max_length"]
    L = ft_model.num_layers
    model = with_selector(ft_model, AttentionTopKSelector(L, max_length, protect_cls=cfg.protect_cls))
    extra = {"stage": "power-bert", "data": data.name, "pair": data.is_pair, "source_model": ft_cfg.get("source_model"),
             "init_checkpoint": str(ckpt), "power_bert": asdict(cfg)}
    run = PhasedRun(out, model, data, tokenizer, max_length, extra, asdict(cfg), fingerprint=fingerprint)
    run.resume_from(state)
    td = TrainData.make(data, tokenizer, max_length)
    steps = -(-len(data.train) // cfg.batch_size)
    dev_len = float(encode(data.dev, tokenizer, max_length).attention_mask.sum(1).float().mean())

    def search(start_epoch: int):
        sel: AttentionTopKSelector = run.model.selector
        sel.retention = None
        total = steps * cfg.search_epochs
        drift = drift_budget(cfg.lr_soft, total, cfg.warmup_ratio)
        log(f"PoWER-BERT search: {total} steps, r drift budget D = {drift:.2f}")
        if drift < 0.75 or drift > 3:
            log(f"warning: D = {drift:.2f} is outside [0.75, 3]: " + ("r cannot fall far, expect little speedup"
                if drift < 0.75 else "every r can reach 0, expect collapse") + "; adjust lr_soft or search_epochs")
        rest = [(n, p) for n, p in run.model.named_parameters() if n != "selector.r"]
        groups = param_groups(rest, cfg.weight_decay) + [{"params": [sel.r], "lr": cfg.lr_soft, "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=cfg.lr)
        sched = linear_warmup(opt, steps * cfg.search_epochs, cfg.warmup_ratio, start_epoch * steps)

        def step(b: Encoded) -> dict[str, float]:
            o = run.model(b.input_ids, b.attention_mask, b.token_type_ids, mode="soft")
            ce = F.cross_entropy(o.logits, b.labels)
            mass = o.aux["mass_penalty"]
            opt.zero_grad()
            (ce + cfg.lam * mass).backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in rest], 1.0)  # r's step is Adam-normalised anyway
            opt.step()
            sched.step()
            sel.clip_r()
            return {"ce": ce.item(), "mass_penalty": mass.item()}
        return step

    def search_row(row: dict) -> None:
        sel = run.model.selector
        row["r_mass"] = [round(float(v), 3) for v in sel.r.detach().sum(dim=1)]
        row["retention"] = retention_from_r(sel.r, sel.protect_cls)
        row["collapsed"] = row["retention"][-1] < COLLAPSE_FRACTION * dev_len
        log(f"search: sum r_j = {row['r_mass']} -> retention {row['retention']}")
        if row["collapsed"]:
            log(f"warning: retention collapsed (last layer keeps {row['retention'][-1]} of ~{dev_len:.0f} tokens, "
                f"IBM/PoWER-BERT#10); lower the knob (lambda={cfg.lam}) or LR_SOFT_EXTRACT")

    def fix_retention() -> None:
        sel: AttentionTopKSelector = run.model.selector
        if sel.retention is None:
            sel.set_retention(retention_from_r(sel.r, sel.protect_cls))
        run.extra["retention"] = sel.retention
        run.extra["collapsed"] = sel.retention[-1] < COLLAPSE_FRACTION * dev_len
        log(f"PoWER-BERT configuration (max length {max_length}): {sel.retention}")

    def retrain(start_epoch: int):
        sel: AttentionTopKSelector = run.model.selector
        fix_retention()  # idempotent; also covers a resume from a checkpoint saved before it was fixed
        sel.r.requires_grad_(False)  # r plays no part in Hard Extract
        named = [(n, p) for n, p in run.model.named_parameters() if n != "selector.r"]
        opt = torch.optim.AdamW(param_groups(named, cfg.weight_decay), lr=cfg.lr)
        sched = linear_warmup(opt, steps * cfg.retrain_epochs, cfg.warmup_ratio, start_epoch * steps)

        def step(b: Encoded) -> dict[str, float]:
            o = run.model(b.input_ids, b.attention_mask, b.token_type_ids, mode="hard")
            ce = F.cross_entropy(o.logits, b.labels)
            opt.zero_grad()
            ce.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in named], 1.0)
            opt.step()
            sched.step()
            return {"ce": ce.item()}
        return step

    phases = [Phase("search", cfg.search_epochs, search, search_row, fix_retention),
              Phase("retrain", cfg.retrain_epochs, retrain)]
    return run.run(phases, td, cfg.batch_size, cfg.seed)
