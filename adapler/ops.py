"""The one compaction step shared by every method: ``adapler::token_drop``.

Semantics (spec: ``plugins/token_drop/README.md``)::

    keep[b,t] = (t == 0) or (mask[b,t] == 1 and scores[b,t] >= threshold[b])
    kept tokens move to the front of their row in original order; rows pad to L = max_b kept_b.

Three forms of the same op live here:
- ``token_drop``: a ``torch.library`` custom op. Its eager kernel runs on CPU and CUDA; its fake kernel
  gives a data-dependent length so ``torch.export`` / the ONNX exporter emit one ``adapler::TokenDrop`` node.
- ``token_drop_std``: the same computation in plain torch ops that both ONNX exporters lower to standard
  ONNX (TopK, ReduceMax, Slice, GatherElements); it is what ``model.std.onnx`` contains.
- ``gather_tokens``: the static-k gather PoWER-BERT uses (top-k indices are known, no threshold).
"""
from __future__ import annotations

import torch
from torch import Tensor

# the keep rule lives with the op's kernels: one copy for torch, the std ONNX graph and the GPU path
from plugins.token_drop.gpu import keep_flags_torch as keep_flags


@torch.library.custom_op("adapler::token_drop", mutates_args=())
def token_drop(hidden: Tensor, scores: Tensor, mask: Tensor, threshold: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Drop tokens scoring under ``threshold`` and compact each row (see module docstring)."""
    return token_drop_std(hidden, scores, mask, threshold)


@token_drop.register_kernel("cuda")
def _token_drop_cuda(hidden: Tensor, scores: Tensor, mask: Tensor, threshold: Tensor):
    # On GPUs the op runs the plugin folder's GPU implementation (Triton when installed, else vectorised
    # torch), the same function the TensorRT quickly-deployable plugin calls.
    from plugins.token_drop.gpu import token_drop_gpu
    return token_drop_gpu(hidden, scores.float(), mask, threshold.float())


@token_drop.register_fake
def _token_drop_fake(hidden: Tensor, scores: Tensor, mask: Tensor, threshold: Tensor):
    B, T, D = hidden.shape
    L = torch.library.get_ctx().new_dynamic_size()
    torch._check(L >= 1)  # [CLS] is always kept
    torch._check(L <= T)
    return (hidden.new_empty((B, L, D)), mask.new_empty((B, L), dtype=torch.int64),
            mask.new_empty((B, L), dtype=torch.int64))


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


def gather_tokens(hidden: Tensor, mask: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """Gather positions ``idx`` [B, k] (sorted ascending) from hidden and mask: PoWER-BERT's static extract."""
    D = hidden.shape[-1]
    return torch.gather(hidden, 1, idx.unsqueeze(-1).expand(-1, -1, D)), torch.gather(mask, 1, idx)
