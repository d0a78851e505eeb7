"""NumPy reference of ``adapler::PackedContributionDrop`` v1 (spec: README.md, "PackedContributionDrop").

The packed op is *defined* through the padded one: unpack the rows to ``[B, T]`` (T = the longest row),
run ``contribution_drop_reference``, pack the kept tokens again, and derive the padded-view indices the
attention of the packed graph needs (``padding_index_reference``). So ContributionDrop's spec (and,
through it, TokenDrop's) stays the one definition of what is kept.
"""
from __future__ import annotations

import numpy as np

from .reference import contribution_drop_reference

__all__ = ["padding_index_reference", "packed_contribution_drop_reference", "PACKED_INPUTS", "PACKED_OUTPUTS"]

PACKED_INPUTS = ("hidden", "cp_hidden", "w2", "offsets", "eta")
PACKED_OUTPUTS = ("hidden_c", "offsets_c", "lengths_c", "pad_index", "unpad_index")


def padding_index_reference(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lengths int32 [B], pad_index int64 [B, L], unpad_index int64 [N])`` for row offsets ``[B + 1]``.

    ``pad_index[b, i] = offsets[b] + i`` for ``i < lengths[b]``, else ``offsets[b]`` (the row's first
    token); ``unpad_index[offsets[b] + i] = b * L + i``; ``L = max(lengths)``.
    """
    lengths = np.diff(offsets).astype(np.int64)
    b = lengths.shape[0]
    L = int(lengths.max()) if b else 0
    i = np.arange(L, dtype=np.int64)[None]
    valid = i < lengths[:, None]
    pad_index = offsets[:-1, None] + np.where(valid, i, 0)
    unpad_index = np.flatnonzero(valid.reshape(-1)).astype(np.int64)
    return lengths.astype(np.int32), pad_index.astype(np.int64), unpad_index


def _check(hidden, cp_hidden, w2, offsets, eta) -> None:
    if hidden.ndim != 2 or hidden.dtype != np.float32:
        raise ValueError(f"PackedContributionDrop: hidden must be float32 [N, D], got {hidden.dtype} {hidden.shape}")
    n = hidden.shape[0]
    if cp_hidden.ndim != 2 or cp_hidden.shape[0] != n or cp_hidden.dtype != np.float32:
        raise ValueError(f"PackedContributionDrop: cp_hidden must be float32 [N, H] with N = {n}, "
                         f"got {cp_hidden.dtype} {cp_hidden.shape}")
    if offsets.ndim != 1 or offsets.shape[0] < 2 or offsets.dtype != np.int64:
        raise ValueError(f"PackedContributionDrop: offsets must be int64 [B + 1] with B >= 1, got {offsets.dtype} {offsets.shape}")
    if offsets[0] != 0 or offsets[-1] != n or (np.diff(offsets) < 1).any():
        raise ValueError(f"PackedContributionDrop: offsets must rise from 0 to N = {n} by at least 1 per row "
                         f"(every row keeps its [CLS]), got {offsets.tolist()}")


def packed_contribution_drop_reference(hidden: np.ndarray, cp_hidden: np.ndarray, w2: np.ndarray,
                                       offsets: np.ndarray, eta: np.ndarray):
    """``(hidden_c [M, D], offsets_c [B + 1], lengths_c [B] int32, pad_index [B, L], unpad_index [M])``."""
    _check(hidden, cp_hidden, w2, offsets, eta)
    lengths = np.diff(offsets)
    b, t = lengths.shape[0], int(lengths.max())
    mask = (np.arange(t)[None] < lengths[:, None]).astype(np.int64)
    h = np.zeros((b, t, hidden.shape[1]), np.float32)
    c = np.zeros((b, t, cp_hidden.shape[1]), np.float32)
    h[mask == 1], c[mask == 1] = hidden, cp_hidden
    hidden_p, mask_p, _ = contribution_drop_reference(h, c, w2, mask, eta)
    kept = mask_p.sum(axis=1)
    offsets_c = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
    lengths_c, pad_index, unpad_index = padding_index_reference(offsets_c)
    return hidden_p[mask_p == 1], offsets_c, lengths_c, pad_index, unpad_index
