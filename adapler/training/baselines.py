"""The baseline trainers in one import: PoWER-BERT (power_bert.py) and TR-BERT (tr_bert.py).

Both are phased, resumable runs (phased.py) starting from a fine-tuned run directory. Choosing a trainer by
method name, the knob of each method and the mapping of ``epochs`` onto each config are the method
registry's (``adapler.methods``: ``get(name).config(...)``, ``.train(...)``, or ``train_method``).
"""
from __future__ import annotations

from .power_bert import COLLAPSE_FRACTION, PowerBertConfig, drift_budget, train_power_bert
from .tr_bert import TrBertConfig, compute_heuristics, train_tr_bert

__all__ = ["COLLAPSE_FRACTION", "PowerBertConfig", "TrBertConfig", "compute_heuristics", "drift_budget",
           "train_power_bert", "train_tr_bert"]
