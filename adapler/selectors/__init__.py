"""Token selectors: the only thing that differs between methods."""
from __future__ import annotations

from transformers import BertConfig

from ..encoder import TokenSelector
from .contribution import ContributionPredictor, ContributionSelector

METHODS = ("bert", "adapler", "power-bert", "tr-bert")


def build_selector(method: str, config: BertConfig, options: dict | None = None) -> TokenSelector:
    """Selector for ``method`` with the options stored in a checkpoint's config.json."""
    options = dict(options or {})
    if method == "bert":
        return TokenSelector()
    if method == "adapler":
        eta = options.get("eta")
        sel = ContributionSelector(config.hidden_size, config.num_hidden_layers,
                                   cp_hidden=options.get("cp_hidden", 32), act=options.get("cp_act", config.hidden_act),
                                   init_std=config.initializer_range)
        if eta is not None:
            if len(eta) != config.num_hidden_layers:
                raise ValueError(f"eta has {len(eta)} values but the backbone has {config.num_hidden_layers} layers")
        return sel
    if method == "power-bert":
        from .power_bert import AttentionTopKSelector
        return AttentionTopKSelector.from_options(config, options)
    if method == "tr-bert":
        from .tr_bert import PolicySelector
        return PolicySelector.from_options(config, options)
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


__all__ = ["METHODS", "build_selector", "ContributionPredictor", "ContributionSelector", "TokenSelector"]
