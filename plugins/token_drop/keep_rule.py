"""The keep rule of ``adapler::TokenDrop`` in torch, and the input checks every torch implementation shares.

    keep[b,t] = (t == 0) or (mask[b,t] == 1 and scores[b,t] >= threshold[b])      # NaN score -> dropped

The one torch copy of the rule: the custom op and its standard-op form (``adapler/ops.py``), the vectorised
torch version (``torch_impl.py``) and the dispatcher (``gpu.py``) all call :func:`keep_flags`.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_inputs", "keep_flags"]


def check_inputs(hidden: Tensor, scores: Tensor, mask: Tensor, threshold: Tensor) -> tuple[int, int, int]:
    """Check shapes against the op signature (README "Shape rules"); return ``(B, T, D)``."""
    if hidden.dim() != 3:
        raise ValueError(f"TokenDrop: hidden must be [B, T, D], got shape {tuple(hidden.shape)}")
    if not hidden.is_floating_point():
        raise ValueError(f"TokenDrop: hidden must be float32 or float16, got {hidden.dtype}")
    b, t, d = hidden.shape
    if t < 1:
        raise ValueError(f"TokenDrop: sequence length T must be >= 1 (position 0 is [CLS]), got T={t}")
    if tuple(scores.shape) != (b, t) or tuple(mask.shape) != (b, t):
        raise ValueError(
            f"TokenDrop: scores and mask must be [B, T] = [{b}, {t}], got {tuple(scores.shape)}, {tuple(mask.shape)}"
        )
    if threshold.numel() not in (1, b) or threshold.dim() > 1:
        raise ValueError(f"TokenDrop: threshold must be [B] = [{b}] or [1], got shape {tuple(threshold.shape)}")
    return b, t, d


def keep_flags(scores: Tensor, mask: Tensor, threshold: Tensor) -> Tensor:
    """Boolean ``keep[B, T]``: position 0 always; otherwise ``mask == 1`` and ``scores >= threshold``.

    Compared in float32 as the spec says (float16 scores widen exactly). Traces to plain ONNX ops
    (Equal, GreaterOrEqual, And, Or), which is what the standard-op graph contains.
    """
    thr = threshold.reshape(-1, 1).to(device=scores.device, dtype=torch.float32)
    keep = (mask == 1) & (scores.to(torch.float32) >= thr)  # NaN >= x is False
    first = torch.zeros_like(keep)
    first[:, 0] = True  # [CLS] rule
    return keep | first
