"""Between a ``PrunedBertClassifier`` and the family's Hugging Face ``*ForSequenceClassification``."""
from __future__ import annotations

from torch import nn

from . import of


def to_hf_classifier(model, attn_implementation: str | None = None) -> nn.Module:
    """The dense Hugging Face classifier with ``model``'s weights (what a user would deploy without pruning);
    ``attn_implementation`` ("eager", "sdpa"; None: transformers' default) picks its attention code."""
    backbone = model.backbone
    problem = backbone.hf_problem(model)
    if problem:
        raise ValueError(problem)
    cfg = model.config.__class__.from_dict({**model.config.to_dict(), "num_labels": model.num_labels})
    if attn_implementation is not None:
        cfg._attn_implementation = attn_implementation
    hf = backbone.hf_classifier_class(cfg).eval()
    ours = {backbone.hf_key(k): v for k, v in model.state_dict().items() if not k.startswith("selector.")}
    missing, unexpected = hf.load_state_dict(ours, strict=False)
    if missing or unexpected:
        raise ValueError(f"weights do not map onto {type(hf).__name__}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return hf


def from_hf_classifier(hf: nn.Module, selector=None):
    """A ``PrunedBertClassifier`` (in ``hf``'s train/eval mode) holding ``hf``'s weights; ``selector`` is plugged in."""
    from ..encoder import PrunedBertClassifier
    backbone = of(hf.config)
    model = PrunedBertClassifier(hf.config.__class__.from_dict(hf.config.to_dict()), hf.config.num_labels, selector)
    theirs = hf.state_dict()
    state = model.state_dict()
    for k in state:
        if not k.startswith("selector."):
            state[k] = theirs[backbone.hf_key(k)]
    model.load_state_dict(state)
    return model.train(hf.training)
