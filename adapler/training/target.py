"""Speedup targets and checkpoint selection, shared by every trainer.

``--target-speedup X``: each trainer steers its trade-off knob towards a dev FLOPs speedup of X (AdapLeR's
phi and TR-BERT's alpha with ``KnobController``; PoWER-BERT's retention is solved for X directly), and
``best/`` is the most accurate epoch at or above X. ``--max-accuracy-drop D``: ``best/`` is the fastest
epoch within D points of the fine-tuned dev accuracy. ``SelectionRule`` is both rules as one sort key.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import UsageError, check_range
from ..flops import Dims, dense_flops, pruned_flops

# The controllers aim this much above X: the dev speedup of the saved epoch scatters around the training
# batches' mean, and selection needs dev >= X. 5 % keeps the result within the 10 % the targets allow.
TARGET_MARGIN = 1.05
# Without a target, a faster epoch that missed the accuracy bound by at most this many points is reported at the
# end of the run (SelectionRule.near_miss): on a dev split of a few hundred texts that is one or two texts.
NEAR_MISS_POINTS = 1.0


def check_target_fields(target_speedup: float | None, max_accuracy_drop: float) -> None:
    """Range checks for the two selection options (called from each config's __post_init__)."""
    if target_speedup is not None:
        check_range("target_speedup (--target-speedup, a FLOPs speedup; 1 = no pruning)", target_speedup, 1)
        if math.isinf(target_speedup):
            raise UsageError("target_speedup (--target-speedup) must be finite, got inf")
    check_range("max_accuracy_drop (--max-accuracy-drop, in accuracy points)", max_accuracy_drop, 0)


def check_knob_free(target_speedup: float | None, knob: float | None, settings: dict[str, Any],
                    knob_field: str) -> None:
    """``--target-speedup`` sets the knob itself: refusing an explicit one says which option to drop."""
    if target_speedup is None:
        return
    if knob is not None or knob_field in settings:
        given = "--knob" if knob is not None else f"--set {knob_field}="
        raise UsageError(f"--target-speedup steers the knob ({knob_field}) itself; drop {given} "
                         "or drop --target-speedup")


@dataclass
class KnobController:
    """Lagrange-multiplier style control of a loss weight: after each step, ``value *= exp(gain * e)`` with
    e = (aim - speedup) / aim clipped to [-1, 1], aim = target x TARGET_MARGIN. Below the aim the length
    pressure grows, above it shrinks; multiplicative so that it covers the decades between datasets
    (vader-movies wanted phi 1e-2, pang-lee 1.5e-3) in a few hundred steps.

    Training batches are not what selection measures (soft counts or sampled actions on training texts vs
    hard removal on dev), so ``calibrate`` after each dev evaluation sets ``calibration`` = dev speedup /
    recent batch speedup, and later steps compare ``speedup x calibration`` with the aim.

    Two-sided (``scale`` set, AdapLeR): a loss weight that only shrinks towards 0 cannot undo an overshoot,
    because what it pushed (eta) then moves back only with the cross-entropy gradient. So the same step
    moves u, and value = scale * sinh(u): multiplicative far above 0 as before, and through 0 into a
    length reward of at most ``scale`` (value >= -scale), which pulls eta back down."""
    target: float
    value: float
    gain: float = 0.05
    lo: float = 1e-6
    hi: float = 100.0
    calibration: float = 1.0
    recent: float | None = None  # moving average of the raw batch speedup (about the last 20 steps)
    scale: float | None = None  # two-sided control: value = scale * sinh(u), value >= -scale; None: one-sided
    error: float = 0.0  # the last step's relative error (aim - calibrated speedup) / aim, clipped to [-1, 1]

    def update(self, speedup: float) -> float:
        self.recent = speedup if self.recent is None else 0.95 * self.recent + 0.05 * speedup
        aim = self.target * TARGET_MARGIN
        err = self.error = max(-1.0, min(1.0, (aim - speedup * self.calibration) / aim))
        if self.scale is None:
            self.value = min(self.hi, max(self.lo, self.value * math.exp(self.gain * err)))
        else:
            u = math.asinh(self.value / self.scale) + self.gain * err
            u = min(math.asinh(self.hi / self.scale), max(-math.asinh(1.0), u))
            self.value = self.scale * math.sinh(u)
        return self.value

    def pullback(self, gain: float) -> float:
        """Factor for the state the knob pushed (AdapLeR's eta) after an overshoot: exp(gain * error) while the
        calibrated speedup is above the aim, 1 otherwise. Shrinking the loss weight alone cannot undo an
        overshoot (docs/results.md §1d: phi went to ~0 and eta stayed where it was); scaling eta itself can,
        and a common factor keeps the per-layer shape the gradient found."""
        return math.exp(gain * min(0.0, self.error))

    def calibrate(self, dev_speedup: float) -> float:
        """Ratio of the dev speedup to the recent batches' (clipped to [0.5, 2]: one evaluation is noisy)."""
        if self.recent:
            self.calibration = max(0.5, min(2.0, dev_speedup / self.recent))
        return self.calibration


def batch_speedup(model, attention_mask: Tensor, kept_lengths: Tensor) -> float:
    """FLOPs speedup of one training batch from its (possibly soft) kept lengths."""
    from ..flops import model_flops
    dense, pruned = model_flops(model, attention_mask.sum(dim=1), kept_lengths.detach())
    return float(dense.sum() / pruned.sum())


def dims_of_config(cfg: dict) -> Dims:
    """Dims of a checkpoint from its config.json (no model built: checks run before any output is written)."""
    bb = cfg["backbone"]
    return Dims(bb.get("hidden_size", 768), bb.get("intermediate_size", 3072), bb.get("num_hidden_layers", 12),
                cfg["num_labels"], 32, bool(cfg.get("pooler", True)))


def max_speedup(lengths: Tensor, dims: Dims, predictor_layers: list[int], drops_after_attention: bool = False,
                first_drop_layer: int = 0) -> float:
    """The FLOPs speedup if every layer from ``first_drop_layer`` on kept only [CLS]: no target above it
    can be reached on these input lengths."""
    n = lengths.double()
    kept = torch.ones(len(n), dims.L, dtype=torch.float64)
    kept[:, :first_drop_layer] = n[:, None]
    return float(dense_flops(n, dims).sum() / pruned_flops(n, kept, dims, predictor_layers,
                                                           drops_after_attention).sum())


def check_reachable(target: float | None, lengths: Tensor, dims: Dims, predictor_layers: list[int],
                    drops_after_attention: bool = False, first_drop_layer: int = 0) -> None:
    if target is None:
        return
    bound = max_speedup(lengths, dims, predictor_layers, drops_after_attention, first_drop_layer)
    if target > bound:
        raise UsageError(f"--target-speedup {target:g} is above what the dev inputs allow (mean length "
                         f"{float(lengths.float().mean()):.1f} tokens: at most {bound:.2f}x even if only [CLS] "
                         f"were kept); choose a --target-speedup well below {bound:.2f}")


@dataclass(frozen=True)
class SelectionRule:
    """Which epoch ``best/`` holds. With a target: the most accurate epoch whose dev speedup is >= X, else
    the closest (fastest) one. Without: the fastest epoch within D points of the fine-tuned dev accuracy,
    else the most accurate one. ``key`` orders epochs; the first of equal keys is kept."""
    finetuned_accuracy: float
    max_accuracy_drop: float = 1.0
    target_speedup: float | None = None

    def qualified(self, accuracy: float, speedup: float) -> bool:
        if self.target_speedup is not None:
            return speedup >= self.target_speedup
        return accuracy >= self.finetuned_accuracy - self.max_accuracy_drop / 100 - 1e-9  # float noise

    def key(self, accuracy: float, speedup: float) -> tuple[bool, float, float]:
        q = self.qualified(accuracy, speedup)
        if self.target_speedup is not None:
            return (q, accuracy, speedup) if q else (q, speedup, accuracy)
        return (q, speedup, accuracy) if q else (q, accuracy, speedup)

    def pick(self, rows: Sequence[dict]) -> int | None:
        """Index of the row ``best/`` should hold (rows: dev_accuracy, dev_flops_speedup)."""
        best = None
        for i, r in enumerate(rows):
            if best is None or self.key(*_acc_speed(r)) > self.key(*_acc_speed(rows[best])):
                best = i
        return best

    def better(self, row: dict, best_row: dict | None) -> bool:
        return best_row is None or self.key(*_acc_speed(row)) > self.key(*_acc_speed(best_row))

    def reason(self, row: dict) -> str:
        acc, speedup = _acc_speed(row)
        q = self.qualified(acc, speedup)
        if self.target_speedup is not None:
            return (f"most accurate epoch with dev speedup >= {self.target_speedup:g}x" if q else
                    f"target {self.target_speedup:g}x not reached: the closest epoch ({speedup:.2f}x)")
        within = f"within {self.max_accuracy_drop:g} point(s) of the fine-tuned dev accuracy " \
                 f"{100 * self.finetuned_accuracy:.2f} %"
        return f"fastest epoch {within}" if q else f"fallback: the most accurate epoch, none {within}"

    def as_dict(self) -> dict[str, Any]:
        return {"target_speedup": self.target_speedup, "max_accuracy_drop": self.max_accuracy_drop,
                "finetuned_dev_accuracy": self.finetuned_accuracy}

    def record(self, row: dict) -> dict[str, Any]:
        """What best/config.json says about its selection."""
        acc, speedup = _acc_speed(row)
        return {"selection": self.reason(row), "selection_rule": self.as_dict(),
                "target_reached": None if self.target_speedup is None else self.qualified(acc, speedup)}

    def closing_note(self, row: dict | None, where: str, candidates: Sequence[dict] = ()) -> str | None:
        """A line for the end of a run whose selected epoch did not meet the rule, or, without a target, whose
        faster epoch missed the accuracy bound narrowly (``near_miss``); else None. ``candidates``: the rows
        that competed for ``best/``, in order (the last one is the run's ``last/``)."""
        if row is None:
            return None
        acc, speedup = _acc_speed(row)
        if self.qualified(acc, speedup):
            return self.near_miss(row, where, candidates)
        name = _epoch_name(row)
        if self.target_speedup is not None:
            return (f"target speedup {self.target_speedup:g}x not reached on dev; {where} is the closest checkpoint: "
                    f"{name} at {speedup:.2f}x (dev accuracy {100 * acc:.2f} %); more --epochs let the knob go further")
        return (f"no epoch within {self.max_accuracy_drop:g} point(s) of the fine-tuned dev accuracy "
                f"{100 * self.finetuned_accuracy:.2f} %; {where} is the most accurate: {name} "
                f"({100 * acc:.2f} % at {speedup:.2f}x)")

    def near_miss(self, row: dict, where: str, candidates: Sequence[dict]) -> str | None:
        """Without a target: the fastest epoch, faster than the selected one, that missed the accuracy bound by
        at most ``NEAR_MISS_POINTS``. On a dev split of a few hundred texts that is one or two texts, so the run
        says where that epoch is (``last/``, when it is the last one) and which option would select it."""
        if self.target_speedup is not None:
            return None
        bound = self.finetuned_accuracy - self.max_accuracy_drop / 100
        speedup = _acc_speed(row)[1]
        near = [(speed, acc, r) for r in candidates for acc, speed in [_acc_speed(r)]
                if speed > speedup and not self.qualified(acc, speed) and bound - acc <= NEAR_MISS_POINTS / 100 + 1e-9]
        if not near:
            return None
        speed_m, acc_m, miss = max(near, key=lambda t: t[0])
        drop = 100 * (self.finetuned_accuracy - acc_m)
        need = math.ceil(drop * 2 - 1e-9) / 2  # the next half point that admits it
        kept = (f"it is saved in {Path(where).parent / 'last'}; compare it with {where} on test (evaluate --json, "
                f"bench/paired_accuracy.py)" if miss is candidates[-1] else "it was not kept")
        return (f"{_epoch_name(miss)} ran at {speed_m:.2f}x, faster than the selected {speedup:.2f}x, but its dev "
                f"accuracy {100 * acc_m:.2f} % missed the bound {100 * bound:.2f} % by {100 * (bound - acc_m):.2f} "
                f"point(s), which on a small dev split can be one or two texts; {kept}, or train with "
                f"--max-accuracy-drop {need:g} to select it")


def _acc_speed(row: dict) -> tuple[float, float]:
    return float(row["dev_accuracy"]), float(row["dev_flops_speedup"])


def _epoch_name(row: dict) -> str:
    return f"{row['phase']} epoch {row['epoch']}" if row.get("phase") else f"epoch {row['epoch']}"


def find_row(history: Iterable[dict], epoch: Any, phase: Any = None) -> dict | None:
    """The history row of a selected epoch (``phase`` only for phased runs)."""
    for r in history:
        if r.get("epoch") == epoch and r.get("phase") == phase:
            return r
    return None
