"""adapler::TokenDrop as ONNX: the schema's type and shape inference, and the NumPy reference registered as
an onnx.reference op (the golden file through a one-node graph)."""
import numpy as np
import onnx
import pytest

from conftest import (TOKEN_DROP_CASES, TOKEN_DROP_INPUTS, assert_token_drop_outputs, token_drop_inputs,
                      token_drop_onnx_model)
from adapler.plugins.onnx_reference import reference_evaluator
from adapler.plugins.token_drop.schema import DOMAIN, OP_TYPE, OP_VERSION, register_onnx_schema


@pytest.fixture(scope="module", autouse=True)
def schema():
    register_onnx_schema()
    return onnx.defs.get_schema(OP_TYPE, OP_VERSION, DOMAIN)


def _shape(value_info) -> list:
    return [d.dim_param or d.dim_value or None for d in value_info.type.tensor_type.shape.dim]


def _strip_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """The one-node model without declared output types: what is left to infer."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for out in model.graph.output:
        out.type.Clear()
    model.graph.ClearField("output")
    return model


def test_schema_registration_is_idempotent(schema):
    assert register_onnx_schema() is False
    assert schema.has_type_and_shape_inference_function
    assert [p.name for p in schema.inputs] == list(TOKEN_DROP_INPUTS)


@pytest.mark.parametrize("dtype,elem", [(np.float32, onnx.TensorProto.FLOAT), (np.float16, onnx.TensorProto.FLOAT16)])
def test_shape_inference_types_and_shared_length(dtype, elem):
    inferred = onnx.shape_inference.infer_shapes(_strip_outputs(token_drop_onnx_model(dtype)), strict_mode=True)
    info = {v.name: v for v in inferred.graph.value_info}
    assert info["hidden_c"].type.tensor_type.elem_type == elem
    assert info["mask_c"].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert info["index"].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert _shape(info["hidden_c"]) == ["B", "drop0_L", "D"]  # B and D from hidden, L named after the node
    assert _shape(info["mask_c"]) == _shape(info["index"]) == ["B", "drop0_L"]


def test_shape_inference_keeps_static_dims_and_rejects_bad_rank():
    model = _strip_outputs(token_drop_onnx_model())
    hidden = model.graph.input[0].type.tensor_type.shape
    hidden.dim[0].dim_value, hidden.dim[2].dim_value = 4, 384
    info = {v.name: v for v in onnx.shape_inference.infer_shapes(model, strict_mode=True).graph.value_info}
    assert _shape(info["hidden_c"]) == [4, "drop0_L", 384]
    scores = model.graph.input[1].type.tensor_type.shape
    scores.dim.add().dim_value = 1  # scores of rank 3
    with pytest.raises(ValueError, match=r"TokenDrop\[adapler\] \(drop0\): scores must have rank 2, got 3"):
        onnx.shape_inference.infer_shapes(model, strict_mode=True)


@pytest.mark.parametrize("case", TOKEN_DROP_CASES)
def test_onnx_reference_op_matches_golden(case):
    inputs = token_drop_inputs(case)
    evaluator = reference_evaluator(token_drop_onnx_model(inputs[0].dtype.type))
    assert_token_drop_outputs(evaluator.run(None, dict(zip(TOKEN_DROP_INPUTS, inputs))), case)
