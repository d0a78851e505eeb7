"""Token selectors: the only thing that differs between methods in the encoder loop.

A checkpoint names its method; ``build_selector`` finds the selector class whose ``method`` attribute is
that name. This is the one lookup below the training layer (checkpoint loading cannot reach
``adapler.methods``, which points up at the trainers); ``adapler.methods`` says everything else about a
method and checks that its selector class is the one listed here.
"""
from __future__ import annotations

from transformers import BertConfig

from ..encoder import TokenSelector
from .contribution import ContributionPredictor, ContributionSelector
from .keep_first import KeepFirstSelector
from .power_bert import AttentionTopKSelector
from .tr_bert import PolicySelector

SELECTORS: dict[str, type[TokenSelector]] = {
    cls.method: cls for cls in (TokenSelector, ContributionSelector, AttentionTopKSelector, PolicySelector,
                                KeepFirstSelector)}


def selector_class(method: str) -> type[TokenSelector]:
    """The selector class of ``method``; an unknown name is a one-line ValueError listing the known ones."""
    try:
        return SELECTORS[method]
    except KeyError:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(SELECTORS)}") from None


def build_selector(method: str, config: BertConfig, options: dict | None = None) -> TokenSelector:
    """Selector for ``method`` with the options stored in a checkpoint's config.json."""
    return selector_class(method).from_options(config, dict(options or {}))


__all__ = ["SELECTORS", "build_selector", "selector_class", "AttentionTopKSelector", "ContributionPredictor",
           "ContributionSelector", "KeepFirstSelector", "PolicySelector", "TokenSelector"]
