"""The dense model: the fine-tuned backbone with the no-op selector (made by `finetune`, not by `train`)."""
from __future__ import annotations

from . import register
from .base import Method


class Dense(Method):
    name = "bert"
    title = "BERT"
    summary = "the fine-tuned dense model (the reference every speedup is measured against)"
    prunes = False
    trainable = False
    fused_ort_graph = True  # the same fused graph without selection nodes
    color = "black"

    def selector_class(self):
        from ..encoder import TokenSelector
        return TokenSelector


BERT = register(Dense())
