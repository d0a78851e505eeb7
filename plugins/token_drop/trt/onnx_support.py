"""TensorRT's ONNX operator support, for the static lint in :mod:`export.trt`.

Transcribed from onnx/onnx-tensorrt ``docs/operators.md``: "TensorRT 10.15 supports operators in the
inclusive range of opset 9 to opset 24". ``SUPPORTED_ONNX_OPS`` = rows marked Y, ``UNSUPPORTED_ONNX_OPS`` =
rows marked N; ``OP_RESTRICTIONS`` = the restrictions the lint checks. Re-check this table against the
operators.md of the TensorRT release you deploy with.
"""

from __future__ import annotations

__all__ = ["OP_RESTRICTIONS", "SUPPORTED_ONNX_OPS", "TRT_OPERATORS_MD_VERSION", "UNSUPPORTED_ONNX_OPS"]

TRT_OPERATORS_MD_VERSION = "10.15"

# Supported = Y rows.
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

# Supported = N rows of the same table.
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
