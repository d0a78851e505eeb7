"""ONNX schema of ``adapler::ContributionDrop`` v1, with its type and shape inference.

The dynamo ONNX exporter takes a custom node's output count from the registered schema (as for TokenDrop,
``plugins/token_drop/schema.py``), so :func:`register_onnx_schema` must run before ``model.cd.onnx`` is
exported; calling it again is a no-op. It declares the three outputs the exporter traces: the optional fourth
output ``kept`` (README.md), which only ``model.ort.onnx`` uses, is declared by the ONNX Runtime kernel alone
(declared here, the exporter would give every node of ``model.cd.onnx`` a fourth output, which the TensorRT
plugin does not have). Nodes in that graph carry TokenDrop's TensorRT plugin attributes
(``plugin_namespace="adapler"``, ``plugin_version="1"``), which ONNX Runtime ignores.

Shape inference: the outputs are TokenDrop's (``hidden_c`` [B, L, D] of ``hidden``'s type, ``index`` int64
[B, L]) except that ``mask_c`` has ``mask``'s type (int64 or int32); ``L`` is ``<node name>_L``.
"""

from __future__ import annotations

import threading

from ..token_drop.schema import (PLUGIN_NAMESPACE, PLUGIN_VERSION, check_input_ranks, plugin_attributes,
                                 set_compacted_outputs)

DOMAIN = "adapler"
OP_TYPE = "ContributionDrop"
OP_VERSION = 1

__all__ = ["DOMAIN", "OP_TYPE", "OP_VERSION", "PLUGIN_NAMESPACE", "PLUGIN_VERSION", "build_onnx_schema",
           "infer_types_and_shapes", "plugin_attributes", "register_onnx_schema"]

_LOCK = threading.Lock()

_DOC = """AdapLeR's selection before a layer, then TokenDrop's compaction (plugins/contribution_drop/README.md).

z = cp_hidden @ w2; scores = softmax of z over the alive tokens (mask == 1), 0 elsewhere;
threshold = eta / n_alive; outputs = TokenDrop(hidden, scores, mask, threshold), mask_c of mask's type."""

_RANKS = {0: ("hidden", 3), 1: ("cp_hidden", 3), 2: ("w2", 1), 3: ("mask", 2), 4: ("eta", 1)}


def infer_types_and_shapes(ctx) -> None:  # ctx: onnx.shape_inference.InferenceContext
    """Output types and shapes of one ContributionDrop node (the schema's inference function)."""
    check_input_ranks(ctx, _RANKS)
    mask = ctx.get_input_type(3)  # None where inference knows nothing of it
    set_compacted_outputs(ctx, mask.tensor_type.elem_type if mask is not None else 0)


def build_onnx_schema():  # -> onnx.defs.OpSchema (onnx imported lazily)
    """Build (without registering) the ``OpSchema`` of ContributionDrop v1, inference function included."""
    from onnx.defs import OpSchema

    param = OpSchema.FormalParameter
    string = OpSchema.AttrType.STRING
    schema = OpSchema(
        OP_TYPE,
        DOMAIN,
        OP_VERSION,
        _DOC,
        inputs=[
            param("hidden", "T", "hidden states entering the layer [B, T, D]"),
            param("cp_hidden", "T", "the CP's hidden layer after its activation [B, T, H]"),
            param("w2", "tensor(float)", "the CP's output weights [H]"),
            param("mask", "M", "1 = alive token, anything else = padding [B, T]"),
            param("eta", "tensor(float)", "the layer's threshold factor [1]"),
        ],
        outputs=[
            param("hidden_c", "T", "compacted hidden states [B, L, D], zero in padding slots"),
            param("mask_c", "M", "1 for the first kept_b slots of row b [B, L]"),
            param("index", "tensor(int64)", "original position of each slot, -1 in padding [B, L]"),
        ],
        type_constraints=[
            ("T", ["tensor(float)", "tensor(float16)"], "hidden states are float32 or float16"),
            ("M", ["tensor(int64)", "tensor(int32)"], "the mask's integer type, kept by mask_c"),
        ],
        attributes=[
            OpSchema.Attribute("plugin_namespace", string, "TensorRT plugin namespace ('adapler'); ignored by ORT",
                               required=False),
            OpSchema.Attribute("plugin_version", string, "TensorRT plugin version ('1'); ignored by ORT",
                               required=False),
        ],
    )
    schema.set_type_and_shape_inference_function(infer_types_and_shapes)
    return schema


def register_onnx_schema() -> bool:
    """Register the ContributionDrop v1 schema with ``onnx.defs`` (idempotent, thread-safe); True if this call
    registered it."""
    import onnx.defs

    with _LOCK:
        if onnx.defs.has(OP_TYPE, OP_VERSION, DOMAIN):
            return False
        onnx.defs.register_schema(build_onnx_schema())
        return True
