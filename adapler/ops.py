"""The compaction ops the encoder calls: ``adapler::token_drop`` and ``adapler::contribution_drop``.

Semantics of token_drop (spec: ``plugins/token_drop/README.md``)::

    keep[b,t] = (t == 0) or (mask[b,t] == 1 and scores[b,t] >= threshold[b])
    kept tokens move to the front of their row in original order; rows pad to L = max_b kept_b.

One op, four faces:
- ``token_drop``: a ``torch.library`` custom op. Its CPU kernel is the plugin folder's vectorised torch
  version (``token_drop_torch``: few ops, since it runs once per layer at batch 1), its CUDA kernel the
  plugin folder's GPU implementation; its fake kernel gives a data-dependent length so ``torch.export`` /
  the ONNX exporter emit one ``adapler::TokenDrop`` node; its autograd formula sends ``hidden_c``'s gradient
  back to the kept positions (TR-BERT's joint stage trains through it).
- ``token_drop_std``: the same computation in plain torch ops that both ONNX exporters lower to standard
  ONNX (TopK, ReduceMax, Slice, GatherElements); inside ``standard_op_form()`` ``drop_tokens`` runs it, which
  is how ``model.std.onnx`` is traced.
- ``drop_tokens``: what the encoder calls.
- ``gather_tokens``: the static-k gather PoWER-BERT uses (top-k indices are known, no threshold).

``contribution_drop`` (spec: ``plugins/contribution_drop/README.md``) is AdapLeR's whole selection step as
one op: the Contribution Predictor's output layer, the masked softmax over alive tokens, the ``eta / n``
threshold and token_drop's compaction. Its kernel is that math in plain torch (``contribution_scores`` then
token_drop's CPU kernel ``token_drop_torch``); the AdapLeR selector calls it only inside
``contribution_drop_form()``, which is how ``model.cd.onnx`` (one ``adapler::ContributionDrop`` node per layer,
for TensorRT) is traced. It has no autograd formula: it is an export form, training uses the selector's own path.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor

# the keep rule lives with the op's kernels: one copy for torch, the std ONNX graph and the GPU path
from adapler.plugins.token_drop.keep_rule import keep_flags
from adapler.plugins.token_drop.torch_impl import token_drop_torch

__all__ = ["contribution_drop", "contribution_drop_form", "contribution_scores", "drop_tokens", "gather_tokens",
           "in_contribution_drop_form", "keep_flags", "masked_distribution", "standard_op_form", "token_drop",
           "token_drop_std"]


@torch.library.custom_op("adapler::token_drop", mutates_args=())
def token_drop(hidden: Tensor, scores: Tensor, mask: Tensor, threshold: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Drop tokens scoring under ``threshold`` and compact each row (see module docstring)."""
    return token_drop_torch(hidden, scores, mask, threshold)


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
# Whether AdapLeR's selector emits one contribution_drop per layer (model.cd.onnx): also an export-time choice.
_CONTRIBUTION_DROP_FORM: ContextVar[bool] = ContextVar("adapler_contribution_drop_form", default=False)


@contextmanager
def _switched_on(var: ContextVar[bool]) -> Iterator[None]:
    token = var.set(True)
    try:
        yield
    finally:
        var.reset(token)


def standard_op_form() -> AbstractContextManager[None]:
    """Inside this block :func:`drop_tokens` runs ``token_drop_std`` (how ``model.std.onnx`` is traced)."""
    return _switched_on(_STANDARD_FORM)


def contribution_drop_form() -> AbstractContextManager[None]:
    """Inside this block AdapLeR's hard mode runs :func:`contribution_drop` (how ``model.cd.onnx`` is traced)."""
    return _switched_on(_CONTRIBUTION_DROP_FORM)


def in_contribution_drop_form() -> bool:
    """True inside :func:`contribution_drop_form` (read by the selectors that have that form)."""
    return _CONTRIBUTION_DROP_FORM.get()


def drop_tokens(hidden: Tensor, scores: Tensor, mask: Tensor, threshold: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The encoder's compaction: the custom op, or its standard-op form inside :func:`standard_op_form`."""
    op = token_drop_std if _STANDARD_FORM.get() else token_drop
    return op(hidden, scores, mask, threshold)


def gather_tokens(hidden: Tensor, mask: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """Gather positions ``idx`` [B, k] (sorted ascending) from hidden and mask: PoWER-BERT's static extract."""
    D = hidden.shape[-1]
    return torch.gather(hidden, 1, idx.unsqueeze(-1).expand(-1, -1, D)), torch.gather(mask, 1, idx)


def masked_distribution(z: Tensor, weights: Tensor) -> Tensor:
    """softmax over the full row, re-weighted by ``weights`` and renormalised (docs/method.md §1.3)."""
    p = z.softmax(dim=-1) * weights
    return p / (p.sum(dim=-1, keepdim=True) + 1e-15)


def contribution_scores(z: Tensor, mask: Tensor, eta: Tensor) -> tuple[Tensor, Tensor]:
    """AdapLeR's hard-mode selection from the CP outputs ``z`` [B, T]: ``(scores [B, T], threshold [B])``, the
    softmax over the alive tokens (``mask == 1``; 0 elsewhere) and ``eta / n_alive`` (``eta``: [1] or 0-d).
    A row without an alive token gets NaN scores and an infinite threshold: only its [CLS] is kept."""
    alive = mask == 1
    scores = masked_distribution(z.float().masked_fill(~alive, float("-inf")), alive.float())
    return scores, eta.float() / alive.sum(dim=1).float()


@torch.library.custom_op("adapler::contribution_drop", mutates_args=())
def contribution_drop(hidden: Tensor, cp_hidden: Tensor, w2: Tensor, mask: Tensor,
                      eta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """ContributionDrop v1: ``z = cp_hidden @ w2``, then :func:`contribution_scores` and the token_drop
    compaction; ``mask_c`` has ``mask``'s type (int64 or int32), ``index`` is int64."""
    z = cp_hidden.float() @ w2.float()  # the CP's output bias is left out: the softmax is shift-invariant
    scores, threshold = contribution_scores(z, mask, eta)
    hidden_c, mask_c, index = token_drop_torch(hidden, scores, mask, threshold)
    return hidden_c, mask_c.to(mask.dtype), index


@contribution_drop.register_fake
def _contribution_drop_fake(hidden: Tensor, cp_hidden: Tensor, w2: Tensor, mask: Tensor, eta: Tensor):
    B, T, D = hidden.shape
    L = torch.library.get_ctx().new_dynamic_size()
    torch._check(L >= 1)  # [CLS] is always kept
    torch._check(L <= T)
    return (hidden.new_empty((B, L, D)), mask.new_empty((B, L)), mask.new_empty((B, L), dtype=torch.int64))
