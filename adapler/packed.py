"""Padding-free (packed) execution of a dense or AdapLeR classifier.

The padded loop (``adapler/encoder.py``) compacts each row after TokenDrop and pads every row to the
longest one, so the token-wise work (QKV and output projections, FFN, LayerNorms, the Contribution
Predictor) also runs on padding. Here the batch is one tensor of real tokens ``[N, D]`` with row
offsets ``offsets [B + 1]`` (``cu_seqlens``: row b is ``hidden[offsets[b]:offsets[b + 1]]``), so that
work costs ``sum_b n_b`` tokens instead of ``B * max_b n_b``. Only attention needs rows: it runs on a
padded view gathered per layer (``padding_index``), the same layout ``model.ort.packed.onnx`` uses.

The packed path gives the padded path's results: the same kept tokens and logits to float rounding
(tests/test_packed.py). It covers the models that have a fused ORT graph (dense, AdapLeR).
Spec of the packed selection step: ``plugins/contribution_drop/README.md`` (PackedContributionDrop).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .backbones import LayerPieces
from .encoder import NEG, ClassifierOutput, PrunedBertClassifier, TokenSelector


class UnsupportedForPacked(ValueError):
    """The model's selector has no packed form (one line, names the alternative)."""


@dataclass
class Packed:
    """A packed batch: ``hidden [N, D]`` real tokens, row b at ``offsets[b]:offsets[b + 1]``."""

    hidden: Tensor
    offsets: Tensor  # [B + 1] int64, offsets[0] = 0
    positions: Tensor  # [N] original position of each token in its input row

    @property
    def lengths(self) -> Tensor:
        return self.offsets[1:] - self.offsets[:-1]


def _selection(model: PrunedBertClassifier):
    from .selectors.contribution import ContributionSelector
    sel = model.selector
    if type(sel) is TokenSelector:
        return None
    if isinstance(sel, ContributionSelector):
        return sel
    raise UnsupportedForPacked(f"method {model.method!r} has no packed path (AdapLeR and dense models do); "
                               "run it padded (mode='hard')")


def pack(hidden: Tensor, mask: Tensor) -> Packed:
    """``[B, T, D]`` with ``mask [B, T]`` (1 = real token) -> the real tokens in row order."""
    keep = mask == 1
    lengths = keep.sum(dim=1)
    if (lengths == 0).any():
        row = int((lengths == 0).nonzero()[0])
        raise ValueError(f"row {row} has no token (attention_mask is all 0); every row needs at least its [CLS]")
    offsets = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)[keep]
    return Packed(hidden[keep], offsets, positions)


def row_ids(offsets: Tensor) -> Tensor:
    """``[N]``: the row of each packed token."""
    B = offsets.numel() - 1
    return torch.repeat_interleave(torch.arange(B, device=offsets.device), offsets[1:] - offsets[:-1])


def padding_index(offsets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(pad_index [B, L], lengths [B], unpad_index [N])`` with ``L = max length``.

    ``hidden[pad_index]`` is the padded view ``[B, L, D]``: slot ``(b, i)`` holds packed token
    ``offsets[b] + i`` for ``i < lengths[b]`` and, in padding, the row's first token (a valid row,
    masked as a key; its query output is never read). ``padded.reshape(B * L, D)[unpad_index]``
    goes back: packed token j of row b came from slot ``b * L + (j - offsets[b])``.
    """
    lengths = offsets[1:] - offsets[:-1]
    B = lengths.numel()
    L = int(lengths.max()) if B else 0
    i = torch.arange(L, device=offsets.device).unsqueeze(0)
    valid = i < lengths.unsqueeze(1)
    pad_index = offsets[:-1].unsqueeze(1) + torch.where(valid, i, torch.zeros_like(i))
    unpad_index = valid.reshape(-1).nonzero().squeeze(1)
    return pad_index, lengths, unpad_index


def contribution_drop_packed(hidden: Tensor, z: Tensor, offsets: Tensor, eta: Tensor,
                             positions: Tensor) -> Packed:
    """AdapLeR's selection on a packed batch (spec: PackedContributionDrop in plugins/contribution_drop).

    ``z [N]``: the CP logits. Per row: softmax over the row, renormalised as the padded model does,
    threshold ``eta / n``, keep the first token (``[CLS]``) and every token scoring ``>=`` the threshold.
    """
    rows = row_ids(offsets)
    B = offsets.numel() - 1
    lengths = offsets[1:] - offsets[:-1]
    z = z.float()
    zmax = torch.full((B,), float("-inf"), device=z.device).scatter_reduce(0, rows, z, "amax")
    e = torch.exp(z - zmax[rows])
    p = e / torch.zeros(B, device=z.device).index_add(0, rows, e)[rows]
    p = p / (torch.zeros(B, device=z.device).index_add(0, rows, p)[rows] + 1e-15)
    threshold = eta.float() / lengths.float()
    first = torch.zeros_like(rows, dtype=torch.bool)
    first[offsets[:-1][lengths > 0]] = True
    keep = first | (p >= threshold[rows])
    kept = torch.zeros(B, dtype=offsets.dtype, device=offsets.device).index_add(0, rows, keep.to(offsets.dtype))
    new_offsets = torch.cat([offsets.new_zeros(1), kept.cumsum(0)])
    return Packed(hidden[keep], new_offsets, positions[keep])


def packed_attention(layer: LayerPieces, hidden: Tensor, offsets: Tensor, num_heads: int) -> Tensor:
    """Self-attention sub-layer (+ residual and LayerNorm) on packed tokens: projections packed, the
    attention itself per row on the padded view."""
    N, D = hidden.shape
    hd = D // num_heads
    pad_index, lengths, unpad_index = padding_index(offsets)
    B, L = pad_index.shape
    key_bias = torch.where(torch.arange(L, device=hidden.device)[None] < lengths[:, None], 0.0, NEG)
    bias = key_bias[:, None, None, :].to(hidden.dtype).expand(B, 1, L, L)

    def heads(t: Tensor) -> Tensor:  # packed [N, D] -> padded [B, heads, L, hd]
        return t[pad_index].view(B, L, num_heads, hd).transpose(1, 2)

    q, k, v = heads(layer.q(hidden)), heads(layer.k(hidden)), heads(layer.v(hidden))
    ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    ctx = ctx.transpose(1, 2).reshape(B * L, D)[unpad_index]
    return layer.ln1(layer.drop1(layer.o(ctx)) + hidden)


@torch.no_grad()
def packed_forward(model: PrunedBertClassifier, input_ids: Tensor, attention_mask: Tensor,
                   token_type_ids: Tensor | None = None, track_positions: bool = False) -> ClassifierOutput:
    """Hard-mode inference on packed tokens; the same outputs as ``model(..., mode="hard")``.

    ``positions`` (with ``track_positions``): per layer, the original positions of the kept tokens as a
    padded ``[B, L_l]`` tensor (-1 in padding), as the padded model reports them.
    """
    selector = _selection(model)
    mask = attention_mask.to(torch.int64)
    x = pack(model.embed(input_ids, token_type_ids), mask)
    kept, history = [], []
    for i, layer in enumerate(model.layers):  # the backbone adapter's pieces, as the padded loop uses them
        if selector is not None:
            z = selector.cps[i](x.hidden)
            x = contribution_drop_packed(x.hidden, z, x.offsets, selector.eta[i], x.positions)
        h = packed_attention(layer, x.hidden, x.offsets, model.num_heads)
        x.hidden = model.feed_forward(layer, h)
        kept.append(x.lengths)
        if track_positions:
            history.append(_padded_positions(x))
    logits = model.classify(x.hidden[x.offsets[:-1]])
    return ClassifierOutput(logits, torch.stack(kept, dim=1), history if track_positions else None, {})


def _padded_positions(x: Packed) -> Tensor:
    pad_index, lengths, _ = padding_index(x.offsets)
    valid = torch.arange(pad_index.shape[1], device=pad_index.device)[None] < lengths[:, None]
    return torch.where(valid, x.positions[pad_index], torch.full_like(pad_index, -1))


def padding_fraction(kept_lengths: Tensor) -> Tensor:
    """``[L]``: per layer, the share of a padded batch's token slots that are padding,
    ``1 - sum_b n_b / (B * max_b n_b)``, from ``kept_lengths [B, L]``."""
    n = kept_lengths.float()
    return 1.0 - n.sum(dim=0) / (n.shape[0] * n.max(dim=0).values).clamp(min=1.0)
