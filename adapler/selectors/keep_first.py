"""A static floor for the bench: before each chosen layer, keep the first tokens of the row and drop the rest.

No scoring network and nothing learned: before layer l in ``layers``, a row with n alive tokens keeps its
first k = min(n, max(1, ceil(fraction * n))) of them ([CLS] is the first), or the first ``tokens`` when that
is set. Removal is the same ``adapler::token_drop`` as AdapLeR's (scores = minus the token's rank among
the alive ones, threshold = -(k - 1/2)), so the model exports through the same TokenDrop path. In soft mode
(re-fine-tuning) the same tokens are masked instead of moved, which gives the same logits.
"""
from __future__ import annotations

import torch
from torch import Tensor
from transformers import BertConfig

from ..encoder import EncoderState, TokenSelector, _bias_from_mask


def keep_counts(n: Tensor, fraction: float, tokens: int | None) -> Tensor:
    """Tokens one drop point keeps of rows with ``n`` alive tokens (float32 holding integers; the model and
    the analytic ``kept_lengths`` share it, so they cannot round differently)."""
    n = n.float()
    k = torch.full_like(n, float(tokens)) if tokens else torch.ceil(fraction * n - 1e-4)  # 0.3 * 10 is 3, not 4
    return torch.minimum(n, k.clamp(min=1.0))


class KeepFirstSelector(TokenSelector):
    method = "keep-first"

    def __init__(self, num_layers: int, layers: list[int], fraction: float = 0.5, tokens: int | None = None):
        super().__init__()
        layers = sorted({int(v) for v in layers})
        if not layers or layers[0] < 0 or layers[-1] >= num_layers:
            raise ValueError(f"keep-first drop layers must lie in 0..{num_layers - 1}, got {layers}")
        if not 0 < fraction <= 1:
            raise ValueError(f"keep-first fraction must lie in (0, 1], got {fraction}")
        if tokens is not None and tokens < 1:
            raise ValueError(f"keep-first tokens must be >= 1, got {tokens}")
        self.num_layers, self.layers, self.fraction, self.tokens = num_layers, layers, float(fraction), tokens

    @classmethod
    def from_options(cls, config: BertConfig, options: dict) -> "KeepFirstSelector":
        return cls(config.num_hidden_layers, options.get("layers", [2]), options.get("fraction", 0.5),
                   options.get("tokens"))

    def config_dict(self) -> dict:
        return {"layers": self.layers, "fraction": self.fraction, "tokens": self.tokens}

    def kept_lengths(self, n: Tensor) -> Tensor:
        """[N, L] tokens each layer processes for rows of ``n`` real tokens, without running the model."""
        kept, cur = [], n.float()
        for layer in range(self.num_layers):
            if layer in self.layers:
                cur = keep_counts(cur, self.fraction, self.tokens)
            kept.append(cur)
        return torch.stack(kept, dim=1)

    def before_layer(self, layer: int, state: EncoderState) -> None:
        if layer not in self.layers:
            return
        alive = state.mask
        rank = torch.cumsum(alive, dim=1) - 1  # rank among the alive tokens, whatever the layout
        k = keep_counts(alive.sum(dim=1), self.fraction, self.tokens)
        if state.mode == "hard":
            state.drop(-rank.to(torch.float32), -(k - 0.5))
            return
        keep = (rank.to(torch.float32) < k[:, None]).to(alive.dtype) * alive  # masked: same survivors, nothing moves
        state.mask, state.bias = keep, _bias_from_mask(keep)
        if state.alive is not None:
            state.alive = state.alive * keep


