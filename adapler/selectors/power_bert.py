"""PoWER-BERT's selector: attention significance and a fixed per-layer retention (docs/method.md §2).

In every layer j, after the attention sub-layer (Add & LayerNorm) and before the FFN, tokens are
ranked by the attention they receive, ``Sig(k) = sum_i A[i, k] - A[k, k]`` (head-mean ``A``):

- soft mode (configuration search, §2.3): the token at rank k is multiplied by ``r[j, k]``, with
  ``r`` a learnable [L, N] parameter in [0, 1] (N = the checkpoint's max length). ``[CLS]`` is
  ranked like every other token unless ``protect_cls``. ``aux["mass_penalty"]`` = sum_j j sum_k r[j, k].
- hard mode (re-training and inference, §2.5): keep ``[CLS]`` + the top (l_j - 1) of positions
  1..T-1, restore the original order, and gather (mask included). Shapes are static per layer.
- soft mode once the configuration is fixed (``retention`` set): the same Hard Extract, masked instead
  of gathered (full length, removed keys get the NEG bias): the "masked evaluation" of docs/method.md §5.

[ours] Padding *queries* are left out of the sum as well as padding keys: the original always pads to
N, our batches are padded to their longest row, so this makes scores independent of batch padding.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import BertConfig

from ..encoder import EncoderState, TokenSelector, _bias_from_mask


def significance(probs: Tensor, mask: Tensor) -> Tensor:
    """[B, T] attention received minus self-attention; padding (and removed) keys are -inf."""
    a = probs.float().mean(dim=1)  # [B, Tq, Tk]
    a = a * mask[:, :, None].to(a.dtype)  # padding queries do not vote [ours]
    sig = a.sum(dim=1) - a.diagonal(dim1=1, dim2=2)
    return sig.masked_fill(mask == 0, float("-inf"))


def retention_from_r(r: Tensor, protect_cls: bool = False) -> list[int]:
    """l_j = max(1, int(sum_k r_j[k])), then clamped to be non-increasing over layers (§2.4).

    With ``protect_cls`` rank 0 is [CLS] at weight 1, so it counts as 1 whatever r[j, 0] is.
    """
    out: list[int] = []
    for row in r.detach().float().cpu():
        mass = 1.0 + float(row[1:].sum()) if protect_cls else float(row.sum())
        ell = max(1, int(mass))
        out.append(min(ell, out[-1]) if out else ell)
    return out


def topk_keep_indices(sig: Tensor, k: int) -> Tensor:
    """[B, k] ascending positions: 0 ([CLS]) plus the top k-1 of positions 1.. by ``sig``.

    Two TopK calls (the second with largest=False sorts the indices): exports without an ONNX Sort.
    """
    B = sig.shape[0]
    top = torch.topk(sig[:, 1:], k - 1, dim=1).indices + 1
    idx = torch.cat([torch.zeros(B, 1, dtype=top.dtype, device=top.device), top], dim=1)
    return torch.topk(idx, k, dim=1, largest=False, sorted=True).values


class AttentionTopKSelector(TokenSelector):
    method = "power-bert"
    needs_attention_probs = True
    drops_after_attention = True

    def __init__(self, num_layers: int, max_length: int, retention: list[int] | None = None,
                 protect_cls: bool = False):
        super().__init__()
        # One retention weight per layer and sorted rank; init 1 (keep everything), clipped to [0, 1].
        self.r = nn.Parameter(torch.ones(num_layers, max_length))
        self.num_layers = num_layers
        self.max_length = max_length
        self.protect_cls = protect_cls
        self.retention: list[int] | None = None
        if retention is not None:
            self.set_retention(retention)

    @classmethod
    def from_options(cls, config: BertConfig, options: dict) -> "AttentionTopKSelector":
        return cls(config.num_hidden_layers, int(options.get("max_length") or config.max_position_embeddings),
                   retention=options.get("retention"), protect_cls=bool(options.get("protect_cls", False)))

    def config_dict(self) -> dict:
        return {"max_length": self.max_length, "retention": self.retention, "protect_cls": self.protect_cls}

    def set_retention(self, retention: list[int]) -> None:
        """Fix the hard-extract configuration (validated: L values, each in [1, N], non-increasing)."""
        retention = [int(v) for v in retention]
        if len(retention) != self.num_layers:
            raise ValueError(f"retention has {len(retention)} values but the backbone has {self.num_layers} layers")
        if any(v < 1 or v > self.max_length for v in retention):
            raise ValueError(f"retention values must lie in [1, {self.max_length}], got {retention}")
        if any(b > a for a, b in zip(retention, retention[1:])):
            raise ValueError(f"retention must be non-increasing over layers, got {retention}")
        self.retention = retention

    def lengths(self) -> list[int]:
        """The configuration in use: the fixed one, or (during the search) the one the current r implies."""
        return self.retention if self.retention is not None else retention_from_r(self.r, self.protect_cls)

    def mass_penalty(self) -> Tensor:
        """sum_j j * sum_k r_j[k], j = 1..L: deeper layers pay more (the Keras L1 term with LAMBDA * j)."""
        j = torch.arange(1, self.num_layers + 1, device=self.r.device, dtype=self.r.dtype)
        return (j * self.r.sum(dim=1)).sum()

    @torch.no_grad()
    def clip_r(self) -> None:
        self.r.clamp_(0.0, 1.0)

    def searching(self, state: EncoderState) -> bool:
        """Soft-Extract applies in soft mode until a configuration is fixed."""
        return state.mode == "soft" and self.retention is None

    def start(self, state: EncoderState) -> None:
        if self.searching(state):
            T = state.mask.shape[1]
            if T > self.max_length:
                raise ValueError(f"sequence length {T} exceeds the retention parameters' length {self.max_length}")
            state.aux["mass_penalty"] = self.mass_penalty()
            state.alive = state.mask.float()
        else:
            state.aux["retention"] = self.lengths()

    def after_attention(self, layer: int, state: EncoderState, probs: Tensor | None) -> None:
        assert probs is not None
        if self.searching(state):
            self._soft(layer, state, probs)
            return
        ell = state.aux["retention"][layer]
        T = state.hidden.shape[1]
        # A row shorter than l_j keeps everything (its padding is masked). Eagerly that is a skip; under export the
        # length is symbolic, and a Python branch on it would be fixed at the tracing example's length, so the
        # graph always takes top-min(l_j, T), which at k = T keeps every position in order.
        if ell >= T and not torch.compiler.is_exporting():
            return
        k = torch.sym_min(ell, T)
        idx = topk_keep_indices(significance(probs, state.mask), k)
        if state.mode == "hard":
            state.gather(idx)
        else:  # masked Hard Extract: same survivors, nothing moves
            keep = torch.zeros_like(state.mask).scatter(1, idx, 1) * state.mask
            state.mask, state.bias = keep, _bias_from_mask(keep)

    def _soft(self, layer: int, state: EncoderState, probs: Tensor) -> None:
        sig = significance(probs, state.mask)
        if self.protect_cls:
            sig[:, 0] = float("inf")  # rank 0 is [CLS], which is then weighted 1 below
        B, T = sig.shape
        order = torch.argsort(sig, dim=1, descending=True, stable=True)  # rank -> position
        r = self.r[layer, :T].to(state.hidden.dtype).expand(B, T)
        weight = torch.zeros_like(r).scatter(1, order, r)  # position -> r of its rank
        if self.protect_cls:
            weight = torch.cat([torch.ones_like(weight[:, :1]), weight[:, 1:]], dim=1)
        state.hidden = state.hidden * weight.unsqueeze(-1)
        state.alive = weight.float() * state.mask.float()  # soft count of what the FFN "keeps"
