"""ONNX schema of ``adapler::TokenDrop`` v1.

torch's dynamo ONNX exporter takes a custom node's output count from the registered ONNX
schema (docs/deploy.md §3.1); without it export fails with
``SchemaError: No schema registered for 'TokenDrop' version '1' and domain 'adapler'!``.
Call :func:`register_onnx_schema` once before exporting; calling it again is a no-op.
"""

from __future__ import annotations

import threading

DOMAIN = "adapler"
OP_TYPE = "TokenDrop"
OP_VERSION = 1
PLUGIN_NAMESPACE = "adapler"
PLUGIN_VERSION = "1"

__all__ = [
    "DOMAIN",
    "OP_TYPE",
    "OP_VERSION",
    "PLUGIN_NAMESPACE",
    "PLUGIN_VERSION",
    "build_onnx_schema",
    "register_onnx_schema",
    "plugin_attributes",
]

_LOCK = threading.Lock()

_DOC = """Drop tokens and compact the kept ones to the front of each row (stable).

keep[b,t] = (t == 0) or (mask[b,t] == 1 and scores[b,t] >= threshold[b]); NaN scores are dropped.
L = max_b sum_t keep[b,t] (>= 1). Padding slots: hidden_c = 0, mask_c = 0, index = -1.
See plugins/token_drop/README.md."""


def plugin_attributes() -> dict[str, str]:
    """The node attributes every TokenDrop node carries (read by TensorRT's ONNX parser)."""
    return {"plugin_namespace": PLUGIN_NAMESPACE, "plugin_version": PLUGIN_VERSION}


def build_onnx_schema():  # -> onnx.defs.OpSchema (onnx imported lazily)
    """Build (without registering) the ``OpSchema`` of TokenDrop v1."""
    from onnx.defs import OpSchema

    param = OpSchema.FormalParameter
    string = OpSchema.AttrType.STRING
    return OpSchema(
        OP_TYPE,
        DOMAIN,
        OP_VERSION,
        _DOC,
        inputs=[
            param("hidden", "T", "hidden states [B, T, D]"),
            param("scores", "tensor(float)", "per-token importance [B, T]"),
            param("mask", "tensor(int64)", "1 = alive token, 0 = padding [B, T]"),
            param("threshold", "tensor(float)", "per-row threshold [B] or [1]"),
        ],
        outputs=[
            param("hidden_c", "T", "compacted hidden states [B, L, D], zero in padding slots"),
            param("mask_c", "tensor(int64)", "1 for the first kept_b slots of row b [B, L]"),
            param("index", "tensor(int64)", "original position of each slot, -1 in padding [B, L]"),
        ],
        type_constraints=[
            ("T", ["tensor(float)", "tensor(float16)"], "hidden states are float32 or float16"),
        ],
        attributes=[
            OpSchema.Attribute(
                "plugin_namespace", string, "TensorRT plugin namespace ('adapler'); ignored by ORT",
                required=False,
            ),
            OpSchema.Attribute(
                "plugin_version", string, "TensorRT plugin version ('1'); ignored by ORT",
                required=False,
            ),
        ],
    )


def register_onnx_schema() -> bool:
    """Register the TokenDrop v1 schema with ``onnx.defs`` (idempotent, thread-safe).

    Returns:
        True if this call registered it, False if it was already registered.
    """
    import onnx.defs

    with _LOCK:
        if onnx.defs.has(OP_TYPE, OP_VERSION, DOMAIN):
            return False
        onnx.defs.register_schema(build_onnx_schema())
        return True
