"""Static TensorRT-readiness lint of an ONNX model (docs/deploy.md §6): no TensorRT needed.

    issues = lint_for_tensorrt("model.onnx", fp16=False)          # [] when TensorRT's parser should take it
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

import onnx
from onnx import numpy_helper

from adapler.plugins.contribution_drop.schema import OP_TYPE as CONTRIBUTION_DROP
from adapler.plugins.token_drop.schema import OP_TYPE as TOKEN_DROP
from adapler.plugins.token_drop.schema import plugin_attributes

ModelLike = Union[str, Path, onnx.ModelProto]

# The ops TensorRT runs as this project's plugins (model.onnx: TokenDrop, model.cd.onnx: ContributionDrop)
PLUGIN_OPS: frozenset[str] = frozenset({TOKEN_DROP, CONTRIBUTION_DROP})
PLUGIN_ATTRS: dict[str, str] = plugin_attributes()  # what TensorRT's parser needs to find either plugin

# TensorRT's ONNX operator support, transcribed from onnx/onnx-tensorrt ``docs/operators.md``: "TensorRT 10.15
# supports operators in the inclusive range of opset 9 to opset 24". SUPPORTED_ONNX_OPS = rows marked Y,
# UNSUPPORTED_ONNX_OPS = rows marked N, OP_RESTRICTIONS = the restrictions the lint checks. Re-check against the
# operators.md of the TensorRT release you deploy with.
TRT_OPERATORS_MD_VERSION = "10.15"

SUPPORTED_ONNX_OPS: frozenset[str] = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool BatchNormalization
BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh
CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten
Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater
GreaterOrEqual GridSample GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish Hardmax
Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log
LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish
Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear
RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2
ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu
Reshape Resize ReverseSequence RMSNormalization RNN RoiAlign RotaryEmbedding Round STFT ScaledTanh Scan
Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus
Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh TensorScatter ThresholdedRelu Tile TopK
Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

UNSUPPORTED_ONNX_OPS: frozenset[str] = frozenset("""
AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor Col2Im CenterCropPad Compress
ConcatFromSequence ConvInteger DFT Det DynamicQuantizeLinear ImageDecoder MatMulInteger MaxRoiPool
MaxUnpool MelWeightMatrix Multinomial NegativeLogLikelihoodLoss Optional OptionalGetElement
OptionalHasElement QLinearConv QLinearMatMul RegexFullMatch SequenceAt SequenceConstruct SequenceEmpty
SequenceErase SequenceInsert SequenceLength SequenceMap SoftmaxCrossEntropyLoss SplitToSequence
StringConcat StringNormalizer StringSplit TfIdfVectorizer Unique
""".split())

OP_RESTRICTIONS: dict[str, str] = {
    "CumSum": "`axis` must be a build-time constant",
    "Slice": "`axes` must be an initializer (docs/deploy.md §5.5)",
    "Squeeze": "`axes` must be resolvable to a constant", "Unsqueeze": "`axes` must be resolvable to a constant",
    "Reduce*": "`axes` must be an initializer",
    "TopK": "`sorted` must be 1. `K` input must be less than 3840",
    "ScatterND": "`reduction` other than `none` is not supported",
    "LayerNormalization": "Only the first output `Y` is supported",
    "Attention": "`past_key`, `past_value`, `nonpad_kv_seqlen` inputs and `present_key`, `present_value`, "
                 "`qk_matmul_output` outputs are unsupported",
}

STANDARD_DOMAINS = frozenset({"", "ai.onnx"})
TRT_MAX_IR_VERSION = 10
TOPK_MAX_K = 3840
_AXES_INPUT = {"Slice": 3, "CumSum": 1, "Squeeze": 1, "Unsqueeze": 1}  # Reduce* -> input 1


@dataclass(frozen=True)
class LintIssue:
    node: str
    op_type: str
    message: str
    rule: str = ""
    severity: str = "error"


def _load(model: ModelLike) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    return onnx.load(str(model), load_external_data=False)


def _iter_graphs(graph: onnx.GraphProto):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _iter_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _iter_graphs(g)


def _constants(model: onnx.ModelProto) -> dict[str, onnx.TensorProto | None]:
    """Tensor names that are initializers or Constant outputs (value if a tensor-valued Constant)."""
    consts: dict[str, onnx.TensorProto | None] = {}
    for g in _iter_graphs(model.graph):
        for init in g.initializer:
            consts[init.name] = init
        for node in g.node:
            if node.op_type == "Constant" and node.domain in STANDARD_DOMAINS and node.output:
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                consts[node.output[0]] = value
    return consts


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _has_fp16(model: onnx.ModelProto) -> bool:
    fp16 = onnx.TensorProto.FLOAT16
    for g in _iter_graphs(model.graph):
        if any(t.data_type == fp16 for t in g.initializer):
            return True
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type == fp16:
                return True
        for node in g.node:
            if node.op_type == "Cast" and _attr(node, "to") == fp16:
                return True
            if node.op_type == "Constant" and any(a.name == "value" and a.t.data_type == fp16 for a in node.attribute):
                return True
    return False


def lint_for_tensorrt(model: ModelLike, fp16: bool = False) -> list[LintIssue]:
    """Static TensorRT-readiness checks of docs/deploy.md §6 (no TensorRT needed).

    Rules: op types supported (or a plugin op: TokenDrop, ContributionDrop) and from a standard domain;
    axes/axis inputs of Reduce*/Slice/CumSum/Squeeze/Unsqueeze are initializers or Constant outputs; TopK
    sorted=1 and a constant K below 3840; no Compress/Unique; plugin nodes carry plugin_namespace="adapler",
    plugin_version="1"; no model-local function named like a plugin op; float16 tensors present when ``fp16``;
    IR version <= 10.
    """
    m = _load(model)
    issues: list[LintIssue] = []
    if m.ir_version > TRT_MAX_IR_VERSION:
        issues.append(LintIssue("", "", f"IR version {m.ir_version} > {TRT_MAX_IR_VERSION}: re-export or save "
                                f"with ir_version={TRT_MAX_IR_VERSION}", "ir-version"))
    for fn in m.functions:
        if fn.name in PLUGIN_OPS:
            issues.append(LintIssue(fn.name, fn.name, f"model-local function '{fn.domain}.{fn.name}': TensorRT's "
                                    "parser inlines it before looking for the plugin; strip it (prepare_trt_onnx)",
                                    "local-function"))
    consts = _constants(m)
    count = 0
    for g in _iter_graphs(m.graph):
        for node in g.node:
            name = node.name or f"<{node.op_type} #{count}>"
            count += 1
            op = node.op_type

            def add(msg: str, rule: str, severity: str = "error") -> None:
                issues.append(LintIssue(name, op, msg, rule, severity))

            if op in PLUGIN_OPS:
                for key, want in PLUGIN_ATTRS.items():
                    got = _attr(node, key)
                    got = got.decode() if isinstance(got, bytes) else got
                    if got != want:
                        add(f"{op} attribute {key}={got!r}, TensorRT needs {want!r} to find the plugin",
                            "plugin-attrs")
                continue
            if node.domain not in STANDARD_DOMAINS:
                add(f"op from domain '{node.domain}' is not a standard ONNX op TensorRT can import", "domain")
                continue
            if op in UNSUPPORTED_ONNX_OPS:
                add(f"{op} is not supported by TensorRT's ONNX parser", "unsupported-op")
                continue
            if op not in SUPPORTED_ONNX_OPS:
                add(f"{op} is not in TensorRT's supported ONNX operator list", "unknown-op")
                continue
            axes_idx = 1 if op.startswith("Reduce") else _AXES_INPUT.get(op)
            if axes_idx is not None and len(node.input) > axes_idx and node.input[axes_idx]:
                if node.input[axes_idx] not in consts:
                    add(f"{'axis' if op == 'CumSum' else 'axes'} input '{node.input[axes_idx]}' is not an initializer "
                        "or Constant output (try `polygraphy surgeon sanitize --fold-constants`)", "constant-axes")
            if op == "TopK":
                if _attr(node, "sorted", 1) != 1:
                    add("TopK sorted must be 1", "topk-sorted")
                k_name = node.input[1] if len(node.input) > 1 else ""
                k_tensor = consts.get(k_name)
                if k_tensor is not None:
                    k = int(numpy_helper.to_array(k_tensor).reshape(-1)[0])
                    if k >= TOPK_MAX_K:
                        add(f"TopK K={k} must be < {TOPK_MAX_K}", "topk-k")
            if op == "ScatterND" and _attr(node, "reduction", b"none") not in (b"none", "none"):
                add("ScatterND reduction other than 'none' is not supported", "scatternd-reduction")
            if op == "LayerNormalization" and any(node.output[1:]):
                add("LayerNormalization: only the first output Y is supported", "layernorm-outputs")
            if op == "Attention" and (any(node.input[4:]) or any(node.output[1:])):
                add(OP_RESTRICTIONS["Attention"], "attention-io")
    if fp16 and not _has_fp16(m):
        issues.append(LintIssue("", "", "fp16 engine requested but the model has no float16 tensors: TensorRT 11 "
                                "is strongly typed, export the ONNX in fp16 (builder --fp16 flags are gone)", "fp16"))
    return issues
