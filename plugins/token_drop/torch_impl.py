"""Vectorised torch implementation of ``adapler::TokenDrop`` (CPU and CUDA, no custom kernel).

A stable sort of the drop flags gives each row's kept positions in order, and one row gather
(``index_select`` on the flattened batch) copies them. Exactly one device->host synchronisation:
reading ``L``. Exact copies of ``hidden`` (no multiply by a mask).

Few ops on purpose: at batch 1 and tens of tokens each op costs microseconds of dispatch, more than its
arithmetic, and the op runs once per layer (docs/results.md, torch batch-1 rows). A single row needs no
padding, so it takes a shorter path (kept positions by ``nonzero``, no padding fill).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .keep_rule import check_inputs, keep_flags

__all__ = ["token_drop_torch"]


def token_drop_torch(
    hidden: Tensor, scores: Tensor, mask: Tensor, threshold: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Same results as ``token_drop_reference``: ``hidden_c [B, L, D]`` (dtype of hidden), ``mask_c [B, L]``
    int64, ``index [B, L]`` int64."""
    b, t, d = check_inputs(hidden, scores, mask, threshold)
    keep = keep_flags(scores, mask, threshold)
    if b == 1:  # one row: L is its kept count, so there is no padding slot
        idx = keep[0].nonzero().squeeze(1)  # ascending positions; the one sync
        n = idx.numel()
        return hidden.index_select(1, idx), torch.ones((1, n), dtype=torch.int64, device=hidden.device), idx[None]
    count = keep.sum(dim=1)  # kept_b, >= 1 ([CLS])
    order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices  # kept first, each group in order
    length = int(count.max()) if b > 0 else 1  # the one sync
    idx = order[:, :length]
    valid = torch.arange(length, device=hidden.device) < count.unsqueeze(1)  # [B, L]
    flat = (idx + torch.arange(b, device=hidden.device).unsqueeze(1) * t).reshape(-1)
    gathered = hidden.reshape(b * t, d).index_select(0, flat).view(b, length, d)
    hidden_c = gathered.masked_fill(~valid.unsqueeze(-1), 0)  # exact: no multiply by the mask
    return hidden_c, valid.to(torch.int64), idx.masked_fill(~valid, -1)
