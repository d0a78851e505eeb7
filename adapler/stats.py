"""Paired comparison of two classifiers on the same examples: accuracy difference, bootstrap interval, McNemar.

Two models scored on the same texts differ only where their predictions differ, so the paired difference is
far more precise than two separate accuracies; its interval says whether a gap is a measurement or noise.
Used by ``bench`` (every model against the dense one), ``verify`` (int8/fp16 against fp32) and
``bench/paired_accuracy.py`` (any two ``evaluate --json`` files).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["mcnemar_exact", "paired_difference"]


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: ``b`` and ``c`` are the counts of texts only one model gets right."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_difference(base: np.ndarray, model: np.ndarray, samples: int = 10000, seed: int = 0,
                      drop: float = 1.0) -> dict:
    """Accuracy difference (points) of ``model`` against ``base`` (boolean correctness per example, same order)."""
    if base.shape != model.shape or base.ndim != 1 or not len(base):
        raise ValueError("the two prediction lists must cover the same, non-empty set of examples")
    delta = model.astype(np.int8) - base.astype(np.int8)  # +1, 0 or -1 per example
    rng = np.random.default_rng(seed)
    n = len(delta)
    boot = np.empty(samples)
    rows = max(1, 2_000_000 // n)  # resamples drawn at once: at most ~16 MB of indices whatever the split size
    for start in range(0, samples, rows):
        k = min(rows, samples - start)
        idx = rng.integers(0, n, size=(k, n))
        boot[start:start + k] = delta[idx].mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5]) * 100
    only_base, only_model = int((delta < 0).sum()), int((delta > 0).sum())
    return {"n_examples": n, "base_accuracy": float(base.mean()), "model_accuracy": float(model.mean()),
            "diff_points": float(delta.mean() * 100), "ci95_points": [float(lo), float(hi)],
            "mcnemar_p": mcnemar_exact(only_base, only_model), "only_base_right": only_base,
            "only_model_right": only_model, "within_points_at_95": bool(lo >= -drop), "drop_points": drop}
