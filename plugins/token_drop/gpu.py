"""Pick the best available device implementation of ``adapler::TokenDrop``.

:func:`token_drop_gpu` runs the Triton kernels (``triton_impl.py``) on CUDA tensors when Triton imports,
else the vectorised torch version (``torch_impl.py``). The first Triton call per (device, dtype) is compared
exactly with the torch version; on a mismatch or an exception Triton is disabled for that key with a
warning. The torch custom op's CUDA kernel (``adapler/ops.py``) and the TensorRT Python plugin
(``trt/qdp.py``) both call it.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from .torch_impl import token_drop_torch
from .triton_impl import TRITON_AVAILABLE, token_drop_triton

__all__ = ["token_drop_gpu"]

_TRITON_STATE: dict[tuple[str, torch.dtype], bool] = {}


def _identical(a: Tensor, b: Tensor) -> bool:
    """Same shape, dtype and values (NaN equals NaN)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    same = a == b
    if a.is_floating_point():
        same |= a.isnan() & b.isnan()
    return bool(same.all())


def token_drop_gpu(
    hidden: Tensor, scores: Tensor, mask: Tensor, threshold: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Triton for CUDA tensors when installed (checked once per device/dtype), else :func:`token_drop_torch`."""
    if not (TRITON_AVAILABLE and hidden.is_cuda):
        return token_drop_torch(hidden, scores, mask, threshold)
    key = (str(hidden.device), hidden.dtype)
    state = _TRITON_STATE.get(key)
    if state is False:
        return token_drop_torch(hidden, scores, mask, threshold)
    try:
        out = token_drop_triton(hidden, scores, mask, threshold)
    except Exception as exc:  # compile or launch failure
        warnings.warn(f"token_drop_triton failed ({exc!r}); using token_drop_torch", RuntimeWarning, stacklevel=2)
        _TRITON_STATE[key] = False
        return token_drop_torch(hidden, scores, mask, threshold)
    if state is None:
        ref = token_drop_torch(hidden, scores, mask, threshold)
        ok = all(_identical(a, r) for a, r in zip(out, ref))
        _TRITON_STATE[key] = ok
        if not ok:
            warnings.warn("token_drop_triton disagrees with token_drop_torch; using torch", RuntimeWarning,
                          stacklevel=2)
            return ref
    return out
