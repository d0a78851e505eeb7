/*
 * adapler::TokenDrop v1 -- TensorRT IPluginV3 implementation. See token_drop_plugin.h.
 *
 * Registration (choose one library per use; both are built by CMakeLists.txt):
 *   libadapler_token_drop_trt.so      registers the creator from a static initializer when the
 *                                     library is dlopen'ed: trtexec --staticPlugins, Polygraphy
 *                                     --plugins, ctypes.CDLL in Python.
 *   libadapler_token_drop_trt_dyn.so  (ADAPLER_TRT_DYNAMIC_REGISTRATION) exports getCreators() /
 *                                     setLoggerFinder() for IPluginRegistry::loadLibrary:
 *                                     trtexec --dynamicPlugins / --setPluginsToSerialize.
 * Loading one library both ways would register the creator twice, which TensorRT rejects.
 */
#include "token_drop_plugin.h"

#include "token_drop_kernel.h"

using namespace nvinfer1;

namespace adapler
{
namespace trt_plugin
{

using common::kSIZE_TENSOR_INDEX;
using common::kSizeTensorType;
using common::logError;

bool TokenDropPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    PluginTensorDesc const* d = common::linearDesc(pos, inOut, nbInputs, nbOutputs, kNB_INPUTS, kNB_OUTPUTS);
    if (d == nullptr)
    {
        return false;
    }
    PluginTensorDesc const& desc = *d;
    switch (pos)
    {
    case 0: return desc.type == DataType::kFLOAT || desc.type == DataType::kHALF; // hidden
    case 1: return desc.type == DataType::kFLOAT;                                 // scores
    case 2: return desc.type == DataType::kINT64;                                 // mask
    case 3: return desc.type == DataType::kFLOAT;                                 // threshold
    case 4: return desc.type == inOut[0].desc.type;                               // hidden_c
    case 5:                                                                       // mask_c
    case 6: return desc.type == DataType::kINT64;                                 // index
    case 7: return desc.type == kSizeTensorType;                                  // L (size tensor)
    default: return false;
    }
}

int32_t TokenDropPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != kNB_OUTPUTS || nbInputs != kNB_INPUTS)
    {
        return -1;
    }
    if (inputTypes[0] != DataType::kFLOAT && inputTypes[0] != DataType::kHALF)
    {
        logError("TokenDrop: hidden must be FLOAT or HALF (TensorRT 11 is strongly typed: export an fp16 ONNX for fp16)");
        return -1;
    }
    outputTypes[0] = inputTypes[0];
    outputTypes[1] = DataType::kINT64;
    outputTypes[2] = DataType::kINT64;
    outputTypes[3] = kSizeTensorType;
    return 0;
}

int32_t TokenDropPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    if (inputs == nullptr || outputs == nullptr || nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS)
    {
        return -1;
    }
    if (inputs[0].nbDims != 3 || inputs[1].nbDims != 2 || inputs[2].nbDims != 2 || inputs[3].nbDims != 1)
    {
        logError("TokenDrop: expected hidden [B,T,D], scores [B,T], mask [B,T], threshold [B] or [1]");
        return -1;
    }
    return common::compactedOutputShapes(inputs[0], outputs, exprBuilder);
}

size_t TokenDropPlugin::workspaceBytes(int64_t B, int64_t T) noexcept
{
    return common::workspaceWithLengthSlot(adapler_token_drop_workspace_size(B, T));
}

int32_t TokenDropPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    Dims const& hd = inputDesc[0].dims;
    int64_t const B = hd.d[0];
    int64_t const T = hd.d[1];
    int64_t const D = hd.d[2];
    int64_t const thresholdLen = common::volume(inputDesc[3].dims);
    int const dtype = inputDesc[0].type == DataType::kHALF ? ADAPLER_TD_FLOAT16 : ADAPLER_TD_FLOAT32;

    common::EnqueueBuffers const buf
        = common::enqueueBuffers(workspace, adapler_token_drop_workspace_size(B, T), outputs[kSIZE_TENSOR_INDEX]);

    int const status = adapler_token_drop_launch(dtype, inputs[0], static_cast<float const*>(inputs[1]),
        static_cast<int64_t const*>(inputs[2]), static_cast<float const*>(inputs[3]), thresholdLen, B, T, D, outputs[0],
        static_cast<int64_t*>(outputs[1]), static_cast<int64_t*>(outputs[2]), buf.L64, buf.L32, buf.scratch, stream);
    if (status != 0)
    {
        logError("TokenDrop: CUDA launch failed");
        return -1;
    }
    return 0;
}

} // namespace trt_plugin
} // namespace adapler

ADAPLER_TRT_REGISTER_PLUGIN(adapler::trt_plugin::TokenDropPluginCreator)
