"""The one compaction step shared by every method: ``adapler::token_drop``.

Semantics (spec: ``plugins/token_drop/README.md``)::

    keep[b,t] = (t == 0) or (mask[b,t] == 1 and scores[b,t] >= threshold[b])
    kept tokens move to the front of their row in original order; rows pad to L = max_b kept_b.

One op, four faces:
- ``token_drop``: a ``torch.library`` custom op. Its CPU kernel is ``token_drop_std``, its CUDA kernel the
  plugin folder's GPU implementation; its fake kernel gives a data-dependent length so ``torch.export`` /
  the ONNX exporter emit one ``adapler::TokenDrop`` node; its autograd formula sends ``hidden_c``'s gradient
  back to the kept positions (TR-BERT's joint stage trains through it).
- ``token_drop_std``: the same computation in plain torch ops that both ONNX exporters lower to standard
  ONNX (TopK, ReduceMax, Slice, GatherElements); inside ``standard_op_form()`` ``drop_tokens`` runs it, which
  is how ``model.std.onnx`` is traced.
- ``drop_tokens``: what the encoder calls.
- ``gather_tokens``: the static-k gather PoWER-BERT uses (top-k indices are known, no threshold).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor

# the keep rule lives with the op's kernels: one copy for torch, the std ONNX graph and the GPU path
from adapler.plugins.token_drop.keep_rule import keep_flags

__all__ = ["drop_tokens", "gather_tokens", "keep_flags", "standard_op_form", "token_drop", "token_drop_std"]


@torch.library.custom_op("adapler::token_drop", mutates_args=())
def token_drop(hidden: Tensor, scores: Tensor, mask: Tensor, threshold: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Drop tokens scoring under ``threshold`` and compact each row (see module docstring)."""
    return token_drop_std(hidden, scores, mask, threshold)


@token_drop.register_kernel("cuda")
def _token_drop_cuda(hidden: Tensor, scores: Tensor, mask: Tensor, threshold: Tensor):
    # On GPUs the op runs the plugin folder's GPU implementation (Triton when installed, else vectorised
    # torch), the same function the TensorRT quickly-deployable plugin calls.
    from adapler.plugins.token_drop.gpu import token_drop_gpu
    return token_drop_gpu(hidden, scores.float(), mask, threshold.float())


@token_drop.register_fake
def _token_drop_fake(hidden: Tensor, scores: Tensor, mask: Tensor, threshold: Tensor):
    B, T, D = hidden.shape
    L = torch.library.get_ctx().new_dynamic_size()
    torch._check(L >= 1)  # [CLS] is always kept
    torch._check(L <= T)
    return (hidden.new_empty((B, L, D)), mask.new_empty((B, L), dtype=torch.int64),
            mask.new_empty((B, L), dtype=torch.int64))


def _setup_context(ctx, inputs, output) -> None:
    ctx.hidden_shape = inputs[0].shape
    ctx.save_for_backward(output[2])  # index: where each slot came from, -1 in padding slots


def _backward(ctx, grad_hidden_c: Tensor, _grad_mask_c, _grad_index):
    """hidden_c[b, i] = hidden[b, index[b, i]] on kept slots, a constant 0 on padding slots; scores, mask and
    threshold only decide *which* tokens stay, so they get no gradient (as in the standard-op form)."""
    (index,) = ctx.saved_tensors
    B, T, D = ctx.hidden_shape
    valid = (index >= 0).unsqueeze(-1)
    grad = torch.where(valid, grad_hidden_c, torch.zeros_like(grad_hidden_c))
    src = index.clamp(min=0).unsqueeze(-1).expand(-1, -1, D)
    return grad.new_zeros((B, T, D)).scatter_add(1, src, grad), None, None, None


token_drop.register_autograd(_backward, setup_context=_setup_context)


def token_drop_std(hidden: Tensor, scores: Tensor, mask: Tensor, threshold: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``token_drop`` written with standard ops only (exports to TopK + ReduceMax + Slice + GatherElements)."""
    B, T, D = hidden.shape
    keep = keep_flags(scores, mask, threshold)
    pos = torch.arange(T, device=hidden.device).unsqueeze(0)
    key = (~keep).to(torch.int64) * T + pos
    order = torch.topk(key, T, dim=1, largest=False, sorted=True).indices
    count = keep.to(torch.int64).sum(dim=1)
    L = count.max()
    if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
        L = int(L)
    idx = order[:, :L]
    n = idx.shape[1]
    torch._check(n >= 1)
    mask_c = torch.arange(n, device=hidden.device).unsqueeze(0) < count.unsqueeze(1)
    hidden_c = torch.gather(hidden, 1, idx.unsqueeze(-1).expand(-1, -1, D))
    hidden_c = torch.where(mask_c.unsqueeze(-1), hidden_c, torch.zeros_like(hidden_c))  # 0 even if a dropped value is NaN
    index = torch.where(mask_c, idx, torch.full_like(idx, -1))
    return hidden_c, mask_c.to(torch.int64), index


# Which form drop_tokens runs. An export-time choice, so it is a context (set around tracing), not model
# state. Decomposing the traced custom op into the standard ops afterwards (ExportedProgram.run_decompositions)
# does not work: the slice to the data-dependent L guards on an unbacked size there.
_STANDARD_FORM: ContextVar[bool] = ContextVar("adapler_token_drop_standard_form", default=False)


@contextmanager
def standard_op_form() -> Iterator[None]:
    """Inside this block :func:`drop_tokens` runs ``token_drop_std`` (how ``model.std.onnx`` is traced)."""
    token = _STANDARD_FORM.set(True)
    try:
        yield
    finally:
        _STANDARD_FORM.reset(token)


def drop_tokens(hidden: Tensor, scores: Tensor, mask: Tensor, threshold: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The encoder's compaction: the custom op, or its standard-op form inside :func:`standard_op_form`."""
    op = token_drop_std if _STANDARD_FORM.get() else token_drop
    return op(hidden, scores, mask, threshold)


def gather_tokens(hidden: Tensor, mask: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """Gather positions ``idx`` [B, k] (sorted ascending) from hidden and mask: PoWER-BERT's static extract."""
    D = hidden.shape[-1]
    return torch.gather(hidden, 1, idx.unsqueeze(-1).expand(-1, -1, D)), torch.gather(mask, 1, idx)
