"""ONNX schema of ``adapler::TokenDrop`` v1, with its type and shape inference.

torch's dynamo ONNX exporter takes a custom node's output count from the registered ONNX
schema (docs/deploy.md §3.1); without it export fails with
``SchemaError: No schema registered for 'TokenDrop' version '1' and domain 'adapler'!``.
Call :func:`register_onnx_schema` once before exporting; calling it again is a no-op.

Shape inference (``onnx.shape_inference.infer_shapes`` once registered): ``hidden_c`` gets ``hidden``'s
element type and ``[B, L, D]``, ``mask_c`` and ``index`` int64 ``[B, L]``, with ``B`` and ``D`` copied from
``hidden`` and ``L`` a symbol of its own per node (``<node name>_L``), shared by the three outputs.
"""

from __future__ import annotations

import re
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
    "check_input_ranks",
    "infer_types_and_shapes",
    "register_onnx_schema",
    "plugin_attributes",
    "set_compacted_outputs",
]

_LOCK = threading.Lock()

_DOC = """Drop tokens and compact the kept ones to the front of each row (stable).

keep[b,t] = (t == 0) or (mask[b,t] == 1 and scores[b,t] >= threshold[b]); NaN scores are dropped.
L = max_b sum_t keep[b,t] (>= 1). Padding slots: hidden_c = 0, mask_c = 0, index = -1.
See plugins/token_drop/README.md."""


def plugin_attributes() -> dict[str, str]:
    """The node attributes every TokenDrop node carries (read by TensorRT's ONNX parser)."""
    return {"plugin_namespace": PLUGIN_NAMESPACE, "plugin_version": PLUGIN_VERSION}


_RANKS = {0: ("hidden", 3), 1: ("scores", 2), 2: ("mask", 2), 3: ("threshold", 1)}


def infer_types_and_shapes(ctx) -> None:  # ctx: onnx.shape_inference.InferenceContext
    """Output types and shapes of one TokenDrop node (the schema's inference function)."""
    import onnx

    check_input_ranks(ctx, _RANKS)
    set_compacted_outputs(ctx, onnx.TensorProto.INT64)


def check_input_ranks(ctx, ranks: dict[int, tuple[str, int]]) -> None:
    """Refuse an input whose known rank is not the op's (``ranks``: input index -> (name, rank))."""
    for idx, (name, rank) in ranks.items():
        known = ctx.get_input_type(idx)  # None where inference knows nothing (e.g. after a com.microsoft op)
        shape = known.tensor_type if known is not None else None
        if shape is not None and shape.HasField("shape") and len(shape.shape.dim) != rank:
            raise ValueError(f"{ctx.get_display_name()}: {name} must have rank {rank}, "
                             f"got {len(shape.shape.dim)}")


def set_compacted_outputs(ctx, mask_elem: int) -> None:
    """Type the three compaction outputs from input 0 (``hidden`` [B, T, D]): ``hidden_c`` [B, L, D] of its type,
    ``mask_c`` [B, L] of ``mask_elem``, ``index`` int64 [B, L]; ``L`` is ``<node name>_L``. Shared with
    ContributionDrop, whose outputs are TokenDrop's. An output whose element type is unknown (``hidden``'s or
    the mask's type not inferred, e.g. in ``model.ort.onnx`` after com.microsoft ops) is left untyped."""
    import onnx

    known = ctx.get_input_type(0)
    hidden = known.tensor_type if known is not None else onnx.TypeProto().tensor_type
    named = re.search(r"\((.+)\)$", ctx.get_display_name())  # "node TokenDrop[adapler] (<name>)"
    length = onnx.TensorShapeProto.Dimension(dim_param=f"{named.group(1)}_L") if named else None
    in_dims = list(hidden.shape.dim) if hidden.HasField("shape") else [None, None, None]
    for out, elem, dims in ((0, hidden.elem_type, [in_dims[0], length, in_dims[2]]),
                            (1, mask_elem, [in_dims[0], length]),
                            (2, onnx.TensorProto.INT64, [in_dims[0], length])):
        if elem == onnx.TensorProto.UNDEFINED:
            continue
        t = onnx.TypeProto()
        t.tensor_type.elem_type = elem
        shape = t.tensor_type.shape
        for dim in dims:
            new = shape.dim.add()  # an unknown dimension stays empty
            if dim is not None:
                new.CopyFrom(dim)
        ctx.set_output_type(out, t)


def build_onnx_schema():  # -> onnx.defs.OpSchema (onnx imported lazily)
    """Build (without registering) the ``OpSchema`` of TokenDrop v1, inference function included."""
    from onnx.defs import OpSchema

    param = OpSchema.FormalParameter
    string = OpSchema.AttrType.STRING
    schema = OpSchema(
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
    schema.set_type_and_shape_inference_function(infer_types_and_shapes)
    return schema


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
