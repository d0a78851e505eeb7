"""NumPy reference of ``adapler::TokenDrop`` v1 — the oracle for every kernel.

Written for clarity, not speed: one explicit loop per row. The semantics are those of
``plugins/token_drop/README.md`` (and ``docs/deploy.md`` §1.2)::

    keep[b,t] = (t == 0) or (mask[b,t] == 1 and scores[b,t] >= threshold[b])
    L         = max_b sum_t keep[b,t]            (>= 1: [CLS] is always kept)

Kept positions are compacted to the front of each row in ascending order; padding slots get
zeros in ``hidden_c``, 0 in ``mask_c`` and -1 in ``index``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["token_drop_reference", "keep_mask_reference"]

_HIDDEN_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


def _validate(
    hidden: np.ndarray, scores: np.ndarray, mask: np.ndarray, threshold: np.ndarray
) -> tuple[int, int, int]:
    """Check shapes and dtypes against the op signature; return (B, T, D)."""
    if hidden.ndim != 3:
        raise ValueError(f"TokenDrop: hidden must be [B, T, D], got shape {hidden.shape}")
    if hidden.dtype not in _HIDDEN_DTYPES:
        raise ValueError(f"TokenDrop: hidden must be float32 or float16, got {hidden.dtype}")
    b, t, d = hidden.shape
    if t < 1:
        raise ValueError(f"TokenDrop: sequence length T must be >= 1 (position 0 is [CLS]), got T={t}")
    if scores.shape != (b, t):
        raise ValueError(f"TokenDrop: scores must be [B, T] = [{b}, {t}], got shape {scores.shape}")
    if scores.dtype != np.float32:
        raise ValueError(f"TokenDrop: scores must be float32, got {scores.dtype}")
    if mask.shape != (b, t):
        raise ValueError(f"TokenDrop: mask must be [B, T] = [{b}, {t}], got shape {mask.shape}")
    if mask.dtype != np.int64:
        raise ValueError(f"TokenDrop: mask must be int64, got {mask.dtype}")
    if threshold.ndim != 1 or threshold.shape[0] not in (1, b):
        raise ValueError(
            f"TokenDrop: threshold must be [B] = [{b}] or [1], got shape {threshold.shape}"
        )
    if threshold.dtype != np.float32:
        raise ValueError(f"TokenDrop: threshold must be float32, got {threshold.dtype}")
    return b, t, d


def keep_mask_reference(
    scores: np.ndarray, mask: np.ndarray, threshold: np.ndarray
) -> np.ndarray:
    """The boolean ``keep[b, t]`` of the op (no validation; shapes as in the signature)."""
    b, t = scores.shape
    keep = np.zeros((b, t), dtype=bool)
    for row in range(b):
        thr = threshold[0] if threshold.shape[0] == 1 else threshold[row]
        for pos in range(t):
            if pos == 0:
                keep[row, pos] = True  # [CLS] rule: kept whatever its score and mask
            else:
                # A NaN score makes `>=` False, so the token is dropped.
                keep[row, pos] = bool(mask[row, pos] == 1 and scores[row, pos] >= thr)
    return keep


def token_drop_reference(
    hidden: np.ndarray, scores: np.ndarray, mask: np.ndarray, threshold: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compact the kept tokens of each row to the front.

    Args:
        hidden: float32 or float16 ``[B, T, D]``.
        scores: float32 ``[B, T]``.
        mask: int64 ``[B, T]``, 1 = alive token, 0 = padding.
        threshold: float32 ``[B]`` or ``[1]`` (broadcast to every row).

    Returns:
        ``hidden_c`` ``[B, L, D]`` (dtype of ``hidden``), ``mask_c`` int64 ``[B, L]``,
        ``index`` int64 ``[B, L]`` (original position of each slot, -1 in padding slots).

    Raises:
        ValueError: if a shape or dtype does not match the op signature.
    """
    hidden = np.asarray(hidden)
    scores = np.asarray(scores)
    mask = np.asarray(mask)
    threshold = np.asarray(threshold)
    b, _, d = _validate(hidden, scores, mask, threshold)

    keep = keep_mask_reference(scores, mask, threshold)
    kept_positions = [[int(p) for p in np.flatnonzero(keep[row])] for row in range(b)]
    length = max(len(positions) for positions in kept_positions) if b > 0 else 1

    hidden_c = np.zeros((b, length, d), dtype=hidden.dtype)
    mask_c = np.zeros((b, length), dtype=np.int64)
    index = np.full((b, length), -1, dtype=np.int64)
    for row, positions in enumerate(kept_positions):
        for slot, pos in enumerate(positions):  # ascending order = stable compaction
            hidden_c[row, slot] = hidden[row, pos]
            mask_c[row, slot] = 1
            index[row, slot] = pos
    return hidden_c, mask_c, index
