"""The ``adapler`` ONNX domain for ``onnx.reference``: TokenDrop and ContributionDrop as reference-evaluator ops.

Each op runs its NumPy reference, so an exported graph runs without the C++ library::

    from adapler.plugins.onnx_reference import reference_evaluator
    logits, kept_lengths = reference_evaluator("model.onnx").run(None, {"input_ids": ids, "attention_mask": mask})

``model.onnx``, ``model.std.onnx`` and ``model.cd.onnx`` run this way. ``model.ort.onnx`` does not: its
``com.microsoft`` fused kernels (Attention, SkipLayerNormalization, ...) have no ``onnx.reference``
implementation; its ``ContributionDrop`` nodes are checked one node at a time (``tests/test_contribution_drop.py``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from .contribution_drop.reference import contribution_drop_reference, kept_reference
from .token_drop.reference import token_drop_reference

__all__ = ["ContributionDrop", "TokenDrop", "reference_evaluator"]


class TokenDrop(OpRun):
    """``adapler::TokenDrop`` v1 (plugins/token_drop/README.md); the TensorRT attributes change nothing."""

    op_domain = "adapler"

    def _run(self, hidden: np.ndarray, scores: np.ndarray, mask: np.ndarray, threshold: np.ndarray,
             plugin_namespace: str | None = None, plugin_version: str | None = None) -> tuple[np.ndarray, ...]:
        return token_drop_reference(hidden, scores, mask, threshold)


class ContributionDrop(OpRun):
    """``adapler::ContributionDrop`` v1 (plugins/contribution_drop/README.md); the TensorRT attributes that
    model.cd.onnx's nodes carry change nothing."""

    op_domain = "adapler"

    def _run(self, hidden: np.ndarray, cp_hidden: np.ndarray, w2: np.ndarray, mask: np.ndarray,
             eta: np.ndarray, plugin_namespace: str | None = None,
             plugin_version: str | None = None) -> tuple[np.ndarray, ...]:
        outputs = contribution_drop_reference(hidden, cp_hidden, w2, mask, eta)
        if len(self.output) > 3:  # the optional kept lengths
            outputs += (kept_reference(outputs[1]),)
        return outputs


def reference_evaluator(model: str | Path | onnx.ModelProto) -> ReferenceEvaluator:
    """An ``onnx.reference.ReferenceEvaluator`` of ``model`` that knows the ``adapler`` ops."""
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    return ReferenceEvaluator(proto, new_ops=[TokenDrop, ContributionDrop])
