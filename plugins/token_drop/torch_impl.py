"""Vectorised torch implementation of ``adapler::TokenDrop`` (CPU and CUDA, no custom kernel).

A stable partition written as a permutation (cumsum + scatter) and one gather. Exactly one
device->host synchronisation: reading ``L``. Exact copies of ``hidden`` (no multiply by a mask).
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
    device = hidden.device
    keep = keep_flags(scores, mask, threshold)
    pos = torch.arange(t, device=device, dtype=torch.int64)
    csum = keep.to(torch.int64).cumsum(dim=1)  # inclusive count of kept positions
    count = csum[:, -1]  # kept_b
    # Stable partition as a permutation: kept -> csum-1, dropped -> count + (#dropped before t).
    dest = torch.where(keep, csum - 1, count.unsqueeze(1) + pos - csum)
    order = torch.empty((b, t), dtype=torch.int64, device=device).scatter_(1, dest, pos.expand(b, t))
    length = int(count.max()) if b > 0 else 1  # the one sync
    idx = order[:, :length]
    valid = pos[:length].unsqueeze(0) < count.unsqueeze(1)  # [B, L]
    index = torch.where(valid, idx, torch.full_like(idx, -1))
    gathered = torch.gather(hidden, 1, idx.unsqueeze(-1).expand(b, length, d))
    hidden_c = gathered.masked_fill(~valid.unsqueeze(-1), 0)  # exact: no multiply by the mask
    return hidden_c, valid.to(torch.int64), index
