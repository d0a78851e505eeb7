"""The project's one FLOPs counter (docs/method.md §1.15, "Project convention").

Analytic, from the model's real shapes; multiply-add = 2 FLOPs; embeddings, LayerNorm, softmax and
biases ignored. Every method is counted on unpadded lengths with its predictor overhead included:

    F_attn(n) = 2(4 n d^2 + 2 n^2 d)    F_ffn(n) = 2(2 n d f)    F_pred(n) = 2 n (d h + h)
    F_head    = 2(d^2 + d C)            (pooler + classifier)

Per layer l the model reports ``kept[l]``, the tokens its FFN processed. The tokens its attention
processed are ``kept[l]`` too, except for selectors that drop between attention and FFN
(PoWER-BERT), where they are ``kept[l-1]`` (``n`` for l = 0). A predictor before layer l scores the
tokens alive before it: ``kept[l-1]``.

What a method's predictors cost is the selector's to say (``predictor_layers``, ``predictor_hidden``,
``drops_after_attention``): the model carries its selector, so the counter needs no table of methods.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Dims:
    d: int  # hidden size
    f: int  # FFN size
    L: int  # layers
    C: int  # classes
    h: int = 32  # predictor hidden size
    pooler: bool = True

    @classmethod
    def of(cls, model) -> "Dims":
        s = model.backbone.shape(model.config)  # read through the family's adapter: DistilBERT says dim, hidden_dim
        return cls(s.hidden, s.ffn, s.layers, model.num_labels, model.selector.predictor_hidden,
                   model.backbone.head_has_dense(model))


def f_attn(n: Tensor, dims: Dims) -> Tensor:
    return 2 * (4 * n * dims.d ** 2 + 2 * n * n * dims.d)


def f_ffn(n: Tensor, dims: Dims) -> Tensor:
    return 2 * (2 * n * dims.d * dims.f)


def f_pred(n: Tensor, dims: Dims) -> Tensor:
    return 2 * n * (dims.d * dims.h + dims.h)


def f_head(dims: Dims) -> int:
    return 2 * ((dims.d ** 2 if dims.pooler else 0) + dims.d * dims.C)


def dense_flops(n: Tensor, dims: Dims) -> Tensor:
    """Per-example FLOPs of the unpruned backbone on ``n`` real tokens."""
    n = n.double()
    return dims.L * (f_attn(n, dims) + f_ffn(n, dims)) + f_head(dims)


def pruned_flops(n: Tensor, kept: Tensor, dims: Dims, predictor_layers: list[int],
                 drops_after_attention: bool = False) -> Tensor:
    """Per-example FLOPs of a pruned model: ``n`` [N] real lengths, ``kept`` [N, L] per-layer lengths."""
    n = n.double()
    kept = kept.double()
    before = torch.cat([n[:, None], kept[:, :-1]], dim=1)  # tokens alive entering each layer
    attn_len = before if drops_after_attention else kept
    total = (f_attn(attn_len, dims) + f_ffn(kept, dims)).sum(dim=1) + f_head(dims)
    for layer in predictor_layers:
        total = total + f_pred(before[:, layer], dims)
    return total


def flops_speedup(n: Tensor, kept: Tensor, dims: Dims, predictor_layers: list[int],
                  drops_after_attention: bool = False) -> float:
    """Ratio of totals (not a mean of ratios): sum dense FLOPs / sum pruned FLOPs."""
    dense = dense_flops(n, dims).sum()
    pruned = pruned_flops(n, kept, dims, predictor_layers, drops_after_attention).sum()
    return float(dense / pruned)


def model_flops(model, n: Tensor, kept: Tensor) -> tuple[Tensor, Tensor]:
    """(dense, pruned) per-example FLOPs for ``model`` given real lengths and its reported kept lengths."""
    dims = Dims.of(model)
    sel = model.selector
    return dense_flops(n, dims), pruned_flops(n, kept, dims, sel.predictor_layers(dims.L), sel.drops_after_attention)
