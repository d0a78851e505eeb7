"""One pruned encoder loop for every method.

The loop owns a BERT-family encoder's weights (the Hugging Face model without head, ``self.bert``) but
runs the layers itself, so that a token selector can act before a layer (AdapLeR, TR-BERT) or between
the attention and feed-forward sub-layers (PoWER-BERT), and so that attention is a plain SDPA call that
exports cleanly to ONNX. The family's adapter (``adapler/backbones/``) says where its embeddings, layer
pieces and head are; the loop itself is the same for all.

Methods differ only in their ``TokenSelector``; physical removal always goes through
``EncoderState.drop`` (the ``adapler::token_drop`` op), ``EncoderState.take_compacted`` (the outputs of
AdapLeR's ``adapler::contribution_drop``, its export form) or ``EncoderState.gather`` (static top-k).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import backbones
from .backbones import LayerPieces
from .ops import drop_tokens, gather_tokens

if TYPE_CHECKING:  # annotations only: the encoder itself never builds a config
    from transformers import BertConfig

NEG = -10000.0  # additive bias of a removed/padded key, as in BERT and the AdapLeR code


@dataclass
class EncoderState:
    """Everything that flows between layers. Selectors read and edit it."""

    hidden: Tensor  # [B, T, D]
    mask: Tensor  # [B, T] int64, 1 = alive real token
    bias: Tensor  # [B, T] float32 additive key bias (0 alive, NEG removed; soft values in training)
    mode: str  # "hard" (physical removal), "soft" (training / masked evaluation) or "dense"
    positions: Tensor | None = None  # [B, T] original position of each slot, -1 in padding
    kept_lengths: list[Tensor] = field(default_factory=list)  # per layer, tokens its FFN processed
    aux: dict[str, Any] = field(default_factory=dict)  # method-specific outputs for losses
    alive: Tensor | None = None  # [B, T] soft alive weight per slot (soft mode); counts replace mask.sum

    def count(self) -> Tensor:
        """Tokens alive now, per row: exact in hard mode, soft count in soft mode."""
        return self.mask.sum(dim=1) if self.alive is None else self.alive.sum(dim=1)

    def drop(self, scores: Tensor, threshold: Tensor) -> None:
        """Physically remove tokens with ``scores < threshold`` (position 0 always kept)."""
        self.take_compacted(*drop_tokens(self.hidden, scores.float(), self.mask, threshold.float()))

    def take_compacted(self, hidden_c: Tensor, mask_c: Tensor, index: Tensor) -> None:
        """Adopt the outputs of a compaction op (token_drop, contribution_drop): the kept tokens, their mask and
        each slot's index into the current slots (-1 in padding); the bias and positions follow."""
        self.hidden, self.mask = hidden_c, mask_c
        self.bias = _bias_from_mask(mask_c)
        if self.positions is not None:
            pos = torch.gather(self.positions, 1, index.clamp(min=0))
            self.positions = torch.where(index >= 0, pos, torch.full_like(pos, -1))

    def gather(self, idx: Tensor) -> None:
        """Keep positions ``idx`` [B, k] (ascending): the static-length path of PoWER-BERT."""
        self.hidden, self.mask = gather_tokens(self.hidden, self.mask, idx)
        self.bias = torch.gather(self.bias, 1, idx)
        if self.positions is not None:
            self.positions = torch.gather(self.positions, 1, idx)


def _bias_from_mask(mask: Tensor) -> Tensor:
    return (1.0 - mask.float()) * NEG


class TokenSelector(nn.Module):
    """No-op selector (the dense model). Subclasses override the hooks they need."""

    method = "bert"
    needs_attention_probs = False

    def predictor_layers(self, num_layers: int) -> list[int]:
        """Layers preceded by a scoring network (for FLOPs)."""
        return []

    drops_after_attention = False  # PoWER-BERT: FFN of layer l runs on fewer tokens than its attention
    predictor_hidden = 0  # hidden size of the scoring network before each of predictor_layers (FLOPs)

    @classmethod
    def from_options(cls, config: BertConfig, options: dict) -> "TokenSelector":
        """The selector a checkpoint's config.json describes (``options``: its ``selector`` block)."""
        return cls()

    def start(self, state: EncoderState) -> None:
        pass

    def before_layer(self, layer: int, state: EncoderState) -> None:
        pass

    def after_attention(self, layer: int, state: EncoderState, probs: Tensor | None) -> None:
        pass

    def config_dict(self) -> dict:
        return {}


@dataclass
class ClassifierOutput:
    logits: Tensor  # [B, C]
    kept_lengths: Tensor  # [B, L] tokens processed by each layer's FFN ([CLS] included; soft count in soft mode)
    positions: list[Tensor] | None  # per layer, original positions of the kept slots ([B, T_l], -1 pad)
    aux: dict[str, Any]


class PrunedBertClassifier(nn.Module):
    """BERT-family sequence classifier whose layers run on the tokens a selector keeps.

    ``config`` is the family's Hugging Face config (``model_type`` picks the adapter); ``pooler`` is BERT's
    optional pooler layer (other families' heads always have their dense layer).
    """

    def __init__(self, config, num_labels: int, selector: TokenSelector | None = None, pooler: bool = True):
        super().__init__()
        self.backbone = backbones.of(config)
        self.config = self.backbone.prepare(config)
        self.shape = self.backbone.shape(self.config)
        self.num_labels = num_labels
        self.bert = self.backbone.build_encoder(self.config, pooler)
        self.dropout = nn.Dropout(self.shape.dropout)
        self.classifier = self.backbone.build_head(self.config, num_labels)
        self.selector = selector or TokenSelector()
        self.num_heads = self.shape.heads

    @property
    def method(self) -> str:
        return self.selector.method

    @property
    def num_layers(self) -> int:
        return self.shape.layers

    @property
    def layers(self) -> list[LayerPieces]:
        """Each layer's pieces (q, k, v, o, LayerNorms, FFN), references into ``self.bert``."""
        return self.backbone.layers(self.bert)

    def embed(self, input_ids: Tensor, token_type_ids: Tensor | None) -> Tensor:
        """The embedding output the first layer reads (token types are zeros where none are given)."""
        return self.backbone.embed(self.bert, input_ids, token_type_ids)

    def classify(self, cls: Tensor) -> Tensor:
        """Logits from the first token's final hidden state [B, D] (the family's head)."""
        return self.backbone.classify(self, cls)

    def attention(self, layer: LayerPieces, state: EncoderState, need_probs: bool) -> tuple[Tensor, Tensor | None]:
        """Self-attention sub-layer (incl. residual + LayerNorm); probabilities only when asked."""
        x = state.hidden
        B, T, D = x.shape
        hd = D // self.num_heads

        def heads(t: Tensor) -> Tensor:
            return t.view(B, T, self.num_heads, hd).transpose(1, 2)

        q, k, v = heads(layer.q(x)), heads(layer.k(x)), heads(layer.v(x))
        # Explicit [B, 1, T, T] expansion: broadcasting against a data-dependent length breaks export.
        bias = state.bias[:, None, None, :].to(q.dtype).expand(B, 1, T, T)
        probs = None
        if need_probs:
            attn = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + bias
            probs = attn.softmax(dim=-1)
            ctx = probs @ v
        else:
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        ctx = ctx.transpose(1, 2).reshape(B, T, D)
        return layer.ln1(layer.drop1(layer.o(ctx)) + x), probs

    @staticmethod
    def feed_forward(layer: LayerPieces, x: Tensor) -> Tensor:
        """Feed-forward sub-layer incl. residual + LayerNorm."""
        return layer.ln2(layer.drop2(layer.ffn_out(layer.act(layer.ffn_in(x)))) + x)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None,
                mode: str = "hard", track_positions: bool = False,
                embeddings: Tensor | None = None) -> ClassifierOutput:
        """``embeddings``: a precomputed embedding output (saliency targets differentiate with respect to it)."""
        if mode not in ("hard", "soft", "dense"):
            raise ValueError(f"mode must be hard, soft or dense, got {mode!r}")
        mask = attention_mask.to(torch.int64)
        B, T = mask.shape
        positions = None
        if track_positions:
            ar = torch.arange(T, device=mask.device).expand(B, T)
            positions = torch.where(mask > 0, ar, torch.full_like(ar, -1))
        hidden = self.embed(input_ids, token_type_ids) if embeddings is None else embeddings
        state = EncoderState(hidden, mask, _bias_from_mask(mask), mode,
                             positions=positions)
        selector = self.selector if mode != "dense" else _DENSE
        selector.start(state)
        history = [] if track_positions else None
        for i, layer in enumerate(self.layers):
            selector.before_layer(i, state)
            h, probs = self.attention(layer, state, selector.needs_attention_probs)
            state.hidden = h
            selector.after_attention(i, state, probs)
            state.hidden = self.feed_forward(layer, state.hidden)
            state.kept_lengths.append(state.count())
            if history is not None:
                history.append(state.positions)
        logits = self.classify(state.hidden[:, 0])
        return ClassifierOutput(logits, torch.stack(state.kept_lengths, dim=1), history, state.aux)


_DENSE = TokenSelector()
