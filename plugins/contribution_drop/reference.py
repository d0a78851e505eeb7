"""NumPy reference of ``adapler::ContributionDrop`` v1: the oracle of every kernel (see README.md).

ContributionDrop is AdapLeR's whole selection step in one node: the Contribution Predictor's output
layer, the masked softmax over alive tokens, the ``eta / n`` threshold, and TokenDrop's compaction.
The compaction is *defined* as a call of TokenDrop's reference, so TokenDrop's spec stays the one
source of truth for it.
"""
from __future__ import annotations

import numpy as np

from ..token_drop.reference import token_drop_reference

__all__ = ["contribution_scores_reference", "contribution_drop_reference", "kept_reference"]


def contribution_scores_reference(cp_hidden: np.ndarray, w2: np.ndarray, mask: np.ndarray,
                                  eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(scores [B, T], threshold [B])``: softmax of ``cp_hidden @ w2`` over the alive tokens of each
    row (0 elsewhere) and ``eta / n_alive``, both float32."""
    if cp_hidden.ndim != 3 or cp_hidden.dtype != np.float32:
        raise ValueError(f"ContributionDrop: cp_hidden must be float32 [B, T, H], got {cp_hidden.dtype} {cp_hidden.shape}")
    b, t, h = cp_hidden.shape
    if w2.shape != (h,) or w2.dtype != np.float32:
        raise ValueError(f"ContributionDrop: w2 must be float32 [H] = [{h}], got {w2.dtype} {w2.shape}")
    if mask.shape != (b, t) or mask.dtype not in (np.int64, np.int32):
        raise ValueError(f"ContributionDrop: mask must be int64 or int32 [B, T] = [{b}, {t}], got {mask.dtype} {mask.shape}")
    if eta.shape != (1,) or eta.dtype != np.float32:
        raise ValueError(f"ContributionDrop: eta must be float32 [1], got {eta.dtype} {eta.shape}")
    z = (cp_hidden.astype(np.float64) @ w2.astype(np.float64)).astype(np.float32)
    alive = mask == 1
    scores = np.zeros((b, t), dtype=np.float32)
    threshold = np.zeros((b,), dtype=np.float32)
    for row in range(b):
        n = int(alive[row].sum())
        with np.errstate(divide="ignore"):
            threshold[row] = np.float32(eta[0]) / np.float32(n)  # n == 0: inf, only [CLS] is kept
        if n:
            zr = z[row, alive[row]]
            e = np.exp(zr - zr.max())
            scores[row, alive[row]] = (e / e.sum()).astype(np.float32)
    return scores, threshold


def contribution_drop_reference(hidden: np.ndarray, cp_hidden: np.ndarray, w2: np.ndarray, mask: np.ndarray,
                                eta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``TokenDrop(hidden, *contribution_scores_reference(cp_hidden, w2, mask, eta))`` with ``mask``:
    ``hidden_c [B, L, D]``, ``mask_c [B, L]`` (the mask's type, int64 or int32), ``index [B, L]``."""
    if hidden.dtype != np.float32:
        raise ValueError(f"ContributionDrop: hidden must be float32, got {hidden.dtype}")
    scores, threshold = contribution_scores_reference(cp_hidden, w2, mask, eta)
    # An int32 mask changes only the type of mask and mask_c: TokenDrop (int64) still defines the result.
    hidden_c, mask_c, index = token_drop_reference(hidden, scores, mask.astype(np.int64), threshold)
    return hidden_c, mask_c.astype(mask.dtype), index


def kept_reference(mask_c: np.ndarray) -> np.ndarray:
    """The optional fourth output ``kept`` [B, 1] int64: each row's kept-token count (its ``mask_c`` ones)."""
    return (mask_c == 1).sum(axis=1, keepdims=True).astype(np.int64)
