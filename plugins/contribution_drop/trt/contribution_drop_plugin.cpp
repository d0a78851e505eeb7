/*
 * adapler::ContributionDrop v1 -- TensorRT IPluginV3 implementation. See contribution_drop_plugin.h.
 *
 * Registration, as TokenDrop's plugin (one library per use; both are built by CMakeLists.txt):
 *   libadapler_contribution_drop_trt.so      static initializer: trtexec --staticPlugins, Polygraphy
 *                                            --plugins, ctypes.CDLL in Python.
 *   libadapler_contribution_drop_trt_dyn.so  (ADAPLER_TRT_DYNAMIC_REGISTRATION) getCreators() /
 *                                            setLoggerFinder() for IPluginRegistry::loadLibrary.
 */
#include "contribution_drop_plugin.h"

#include "contribution_drop_kernel.h"

using namespace nvinfer1;

namespace adapler
{
namespace trt_plugin
{

using common::kSIZE_TENSOR_INDEX;
using common::kSizeTensorType;
using common::logError;

namespace
{

bool isFloat(DataType t) noexcept
{
    return t == DataType::kFLOAT || t == DataType::kHALF;
}

bool isMask(DataType t) noexcept
{
    return t == DataType::kINT64 || t == DataType::kINT32;
}

} // namespace

bool ContributionDropPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    PluginTensorDesc const* d = common::linearDesc(pos, inOut, nbInputs, nbOutputs, kNB_INPUTS, kNB_OUTPUTS);
    if (d == nullptr)
    {
        return false;
    }
    PluginTensorDesc const& desc = *d;
    // TensorRT asks position by position with the earlier positions fixed: types that must agree are
    // compared against the first of them (hidden for the float tensors, mask for mask_c).
    switch (pos)
    {
    case 0: return isFloat(desc.type);                        // hidden
    case 1: return desc.type == inOut[0].desc.type;           // cp_hidden
    case 2: return desc.type == DataType::kFLOAT;             // w2
    case 3: return isMask(desc.type);                         // mask
    case 4: return desc.type == DataType::kFLOAT;             // eta
    case 5: return desc.type == inOut[0].desc.type;           // hidden_c
    case 6: return desc.type == inOut[3].desc.type;           // mask_c
    case 7: return desc.type == DataType::kINT64;             // index
    case 8: return desc.type == kSizeTensorType;              // L (size tensor)
    default: return false;
    }
}

int32_t ContributionDropPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != kNB_OUTPUTS || nbInputs != kNB_INPUTS)
    {
        return -1;
    }
    if (!isFloat(inputTypes[0]) || inputTypes[1] != inputTypes[0])
    {
        logError("ContributionDrop: hidden and cp_hidden must both be FLOAT or both HALF (TensorRT 11 is strongly "
                 "typed: export an fp16 ONNX for fp16)");
        return -1;
    }
    if (inputTypes[2] != DataType::kFLOAT || inputTypes[4] != DataType::kFLOAT)
    {
        logError("ContributionDrop: w2 and eta must be FLOAT (an fp16 export keeps them float32)");
        return -1;
    }
    if (!isMask(inputTypes[3]))
    {
        logError("ContributionDrop: mask must be INT64 or INT32");
        return -1;
    }
    outputTypes[0] = inputTypes[0];
    outputTypes[1] = inputTypes[3];
    outputTypes[2] = DataType::kINT64;
    outputTypes[3] = kSizeTensorType;
    return 0;
}

int32_t ContributionDropPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
    DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
    IExprBuilder& exprBuilder) noexcept
{
    if (inputs == nullptr || outputs == nullptr || nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS)
    {
        return -1;
    }
    if (inputs[0].nbDims != 3 || inputs[1].nbDims != 3 || inputs[2].nbDims != 1 || inputs[3].nbDims != 2
        || inputs[4].nbDims != 1)
    {
        logError("ContributionDrop: expected hidden [B,T,D], cp_hidden [B,T,H], w2 [H], mask [B,T], eta [1]");
        return -1;
    }
    return common::compactedOutputShapes(inputs[0], outputs, exprBuilder); // TokenDrop's outputs
}

size_t ContributionDropPlugin::workspaceBytes(int64_t B, int64_t T) noexcept
{
    return common::workspaceWithLengthSlot(adapler_contribution_drop_workspace_size(B, T));
}

int32_t ContributionDropPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    Dims const& hd = inputDesc[0].dims;
    int64_t const B = hd.d[0];
    int64_t const T = hd.d[1];
    int64_t const D = hd.d[2];
    int64_t const H = inputDesc[1].dims.d[2];
    int const dtype = inputDesc[0].type == DataType::kHALF ? ADAPLER_CD_FLOAT16 : ADAPLER_CD_FLOAT32;
    int const maskType = inputDesc[3].type == DataType::kINT32 ? ADAPLER_CD_MASK_INT32 : ADAPLER_CD_MASK_INT64;

    size_t const kernelBytes = adapler_contribution_drop_workspace_size(B, T);
    common::EnqueueBuffers const buf = common::enqueueBuffers(workspace, kernelBytes, outputs[kSIZE_TENSOR_INDEX]);
    int const status = adapler_contribution_drop_launch(dtype, maskType, inputs[0], inputs[1],
        static_cast<float const*>(inputs[2]), inputs[3], static_cast<float const*>(inputs[4]), B, T, D, H, outputs[0],
        outputs[1], static_cast<int64_t*>(outputs[2]), buf.L64, buf.L32, buf.scratch, stream);
    if (status != 0)
    {
        logError("ContributionDrop: CUDA launch failed");
        return -1;
    }
    return 0;
}

} // namespace trt_plugin
} // namespace adapler

ADAPLER_TRT_REGISTER_PLUGIN(adapler::trt_plugin::ContributionDropPluginCreator)
