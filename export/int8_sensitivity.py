"""Which encoder nodes cost accuracy under int8, and an int8 graph that leaves the worst of them in float.

Dynamic int8 quantizes each MatMul's input per call with one scale for the whole tensor, so a node whose
input has a few large values (an FFN output after GELU, the last layers) loses more than the rest. On a
pruned graph every such error also moves the next Contribution Predictor's scores across the threshold.
``rank_nodes`` measures each candidate node alone: the graph with only that node quantized, run on
labelled examples (the dev split; never the test split), against the float graph. ``quantize_keeping_float``
then quantizes everything except the ``k`` highest-ranked nodes. The cost is that those nodes run in float:
measure it with ``bench`` (docs/results.md §6a).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .deploy import DeployError, int8_candidates, quantize_int8
from .verify import run_graph


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(1, keepdims=True)
    return x - np.log(np.exp(x).sum(1, keepdims=True))


def divergence(ref_logits: np.ndarray, logits: np.ndarray) -> float:
    """Mean KL(softmax(ref) || softmax(logits)) over the examples: how far a graph's predictions move."""
    p, q = _log_softmax(np.asarray(ref_logits, np.float64)), _log_softmax(np.asarray(logits, np.float64))
    return float((np.exp(p) * (p - q)).sum(1).mean())


def rank_nodes(src: str | Path, feeds: list[dict], threads: int | None = None,
               progress=None) -> list[dict[str, Any]]:
    """Every int8 candidate node of the float graph ``src``, most harmful first: ``node``, ``kl`` (mean KL
    divergence of the predictions from the float graph's when only this node is int8), ``flips`` (share of
    changed argmax decisions) and, for pruned graphs, ``kept_lengths_identical`` (share of examples whose
    kept lengths stay those of the float graph in every layer). ``progress(i, n)`` is called per node."""
    from adapler.plugins.token_drop.ort_session import create_session
    src = Path(src)
    candidates = int8_candidates(src)
    if not candidates:
        raise DeployError(f"{src.name} has no MatMul or Attention node to quantize")
    ref_logits, ref_kept = run_graph(create_session(src, threads=threads), feeds)
    ranking = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(candidates):
            one = quantize_int8(src, Path(tmp) / f"{i}.onnx", only=[name])
            logits, kept = run_graph(create_session(one, threads=threads), feeds)
            row = {"node": name, "kl": divergence(ref_logits, logits),
                   "flips": float((logits.argmax(1) != ref_logits.argmax(1)).mean())}
            if ref_kept is not None:
                row["kept_lengths_identical"] = float((kept == ref_kept).all(axis=1).mean())
            ranking.append(row)
            one.unlink()
            if progress is not None:
                progress(i + 1, len(candidates))
    return sorted(ranking, key=lambda r: -r["kl"])


def most_harmful(ranking: list[dict[str, Any]], k: int) -> list[str]:
    """The ``k`` first nodes of ``rank_nodes``' ranking: what ``quantize_int8(keep_float=...)`` leaves float."""
    if not 0 <= k <= len(ranking):
        raise DeployError(f"cannot keep {k} nodes in float: the graph has {len(ranking)} int8 candidates; "
                          f"choose 0 to {len(ranking)}")
    return [r["node"] for r in ranking[:k]]


def quantize_keeping_float(src: str | Path, dst: str | Path, ranking: list[dict[str, Any]], k: int) -> list[str]:
    """Quantize ``src`` as ``quantize_int8`` does, except the ``k`` first nodes of ``ranking``; returns them."""
    keep = most_harmful(ranking, k)
    quantize_int8(src, dst, keep_float=keep)
    return keep
