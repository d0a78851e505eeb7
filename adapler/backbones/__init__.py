"""BERT-family backbones: one registered adapter per Hugging Face ``model_type``.

An adapter says how one family's Hugging Face modules map onto the pieces the encoder loop runs
(embeddings, per layer q/k/v/o + LayerNorm + FFN + LayerNorm, the classification head), so every
selector and the compaction op work unchanged on every family. Nothing outside an adapter's own
file branches on a family's name: callers ask ``get(model_type)`` or ``of(config)`` for its adapter.
"""
from __future__ import annotations

from .base import Backbone, EmbeddingTables, LayerPieces, Shape

_REGISTRY: dict[str, Backbone] = {}


def register(backbone: Backbone) -> Backbone:
    _REGISTRY[backbone.model_type] = backbone
    return backbone


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(model_type: str | None) -> Backbone:
    """The adapter for ``model_type`` (None: BERT, what checkpoints written before backbones recorded)."""
    key = model_type or "bert"
    if key not in _REGISTRY:
        raise ValueError(f"model_type {key!r} is not a supported backbone; adapler supports {', '.join(names())}")
    return _REGISTRY[key]


def of(config) -> Backbone:
    """The adapter for a Hugging Face config object."""
    return get(getattr(config, "model_type", None))


def config_problem(config: object) -> str | None:
    """What makes a backbone config dict unusable (unknown model_type, wrong type, non-positive size, heads
    not dividing the hidden size), or None. Checked before transformers sees it, whose errors are tracebacks."""
    if not isinstance(config, dict):
        return f"config must be a JSON object, got {type(config).__name__}"
    try:
        backbone = get(config.get("model_type"))
    except ValueError as e:
        return str(e)
    return backbone.config_problem(config)


from . import bert, distilbert, electra, roberta  # noqa: E402,F401  (each registers itself)

__all__ = ["Backbone", "EmbeddingTables", "LayerPieces", "Shape", "config_problem", "get", "names", "of", "register"]
