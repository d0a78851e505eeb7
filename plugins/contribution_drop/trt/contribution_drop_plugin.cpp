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

#include <exception>
#include <new>

using namespace nvinfer1;

namespace adapler
{
namespace trt_plugin
{

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

ContributionDropPlugin::ContributionDropPlugin(ContributionDropPlugin const& /*other*/)
    : mFieldsToSerialize{}
{
}

IPluginCapability* ContributionDropPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    }
    return nullptr;
}

IPluginV3* ContributionDropPlugin::clone() noexcept
{
    try
    {
        return new ContributionDropPlugin(*this);
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return nullptr;
}

char const* ContributionDropPlugin::getPluginName() const noexcept
{
    return kCONTRIBUTION_DROP_NAME;
}

char const* ContributionDropPlugin::getPluginVersion() const noexcept
{
    return kCONTRIBUTION_DROP_VERSION;
}

char const* ContributionDropPlugin::getPluginNamespace() const noexcept
{
    return common::kNAMESPACE;
}

int32_t ContributionDropPlugin::getNbOutputs() const noexcept
{
    return kNB_OUTPUTS;
}

int32_t ContributionDropPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    if (in == nullptr || out == nullptr || nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS)
    {
        logError("ContributionDrop expects 5 inputs (hidden, cp_hidden, w2, mask, eta) and 4 outputs");
        return -1;
    }
    return 0;
}

bool ContributionDropPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS || pos < 0
        || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR)
    {
        return false;
    }
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
    IDimensionExpr const* batch = inputs[0].d[0];
    IDimensionExpr const* seq = inputs[0].d[1];
    IDimensionExpr const* dim = inputs[0].d[2];

    // L is data-dependent: 1 <= L <= T (TokenDrop's rule). Autotune at about half the input length.
    IDimensionExpr const* opt = exprBuilder.operation(DimensionOperation::kCEIL_DIV, *seq, *exprBuilder.constant(2));
    IDimensionExpr const* L = opt != nullptr ? exprBuilder.declareSizeTensor(kSIZE_TENSOR_INDEX, *opt, *seq) : nullptr;
    if (L == nullptr)
    {
        return -1;
    }
    outputs[0].nbDims = 3; // hidden_c [B, L, D]
    outputs[0].d[0] = batch;
    outputs[0].d[1] = L;
    outputs[0].d[2] = dim;
    for (int32_t i = 1; i <= 2; ++i) // mask_c, index [B, L]
    {
        outputs[i].nbDims = 2;
        outputs[i].d[0] = batch;
        outputs[i].d[1] = L;
    }
    outputs[kSIZE_TENSOR_INDEX].nbDims = 0; // size tensors are 0-D
    return 0;
}

size_t ContributionDropPlugin::workspaceBytes(int64_t B, int64_t T) noexcept
{
    return common::workspaceWithLengthSlot(adapler_contribution_drop_workspace_size(B, T));
}

size_t ContributionDropPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    if (inputs == nullptr || nbInputs != kNB_INPUTS || inputs[0].max.nbDims != 3)
    {
        return 0;
    }
    return workspaceBytes(inputs[0].max.d[0], inputs[0].max.d[1]);
}

int32_t ContributionDropPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    if (in == nullptr || out == nullptr || nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS)
    {
        return -1;
    }
    return 0;
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

    void* scratch = nullptr;
    int64_t* lSlot = nullptr;
    common::carveWorkspace(workspace, adapler_contribution_drop_workspace_size(B, T), scratch, lSlot);
#if ADAPLER_SIZE_TENSOR_INT64
    int64_t* L64 = static_cast<int64_t*>(outputs[kSIZE_TENSOR_INDEX]);
    int32_t* L32 = nullptr;
    (void) lSlot;
#else
    int64_t* L64 = lSlot; // the kernel's int64 L, with an int32 copy into the size tensor
    int32_t* L32 = static_cast<int32_t*>(outputs[kSIZE_TENSOR_INDEX]);
#endif
    int const status = adapler_contribution_drop_launch(dtype, maskType, inputs[0], inputs[1],
        static_cast<float const*>(inputs[2]), inputs[3], static_cast<float const*>(inputs[4]), B, T, D, H, outputs[0],
        outputs[1], static_cast<int64_t*>(outputs[2]), L64, L32, scratch, stream);
    if (status != 0)
    {
        logError("ContributionDrop: CUDA launch failed");
        return -1;
    }
    return 0;
}

IPluginV3* ContributionDropPlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept
{
    return clone(); // no per-context resources
}

PluginFieldCollection const* ContributionDropPlugin::getFieldsToSerialize() noexcept
{
    mFieldsToSerialize.nbFields = 0;
    mFieldsToSerialize.fields = nullptr;
    return &mFieldsToSerialize;
}

char const* ContributionDropPluginCreator::getPluginName() const noexcept
{
    return kCONTRIBUTION_DROP_NAME;
}

char const* ContributionDropPluginCreator::getPluginVersion() const noexcept
{
    return kCONTRIBUTION_DROP_VERSION;
}

char const* ContributionDropPluginCreator::getPluginNamespace() const noexcept
{
    return common::kNAMESPACE;
}

PluginFieldCollection const* ContributionDropPluginCreator::getFieldNames() noexcept
{
    return mFieldNames.collection();
}

IPluginV3* ContributionDropPluginCreator::createPlugin(
    char const* /*name*/, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
{
    try
    {
        if (!common::fieldsMatch(fc, kCONTRIBUTION_DROP_NAME, kCONTRIBUTION_DROP_VERSION))
        {
            return nullptr;
        }
        return new ContributionDropPlugin();
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return nullptr;
}

} // namespace trt_plugin
} // namespace adapler

#if defined(ADAPLER_TRT_DYNAMIC_REGISTRATION) && ADAPLER_TRT_DYNAMIC_REGISTRATION

extern "C" ADAPLER_CD_API void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    adapler::trt_plugin::common::loggerFinder() = finder;
}

extern "C" ADAPLER_CD_API nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static adapler::trt_plugin::ContributionDropPluginCreator sCreator;
    static nvinfer1::IPluginCreatorInterface* const kCreators[] = {&sCreator};
    nbCreators = 1;
    return kCreators;
}

#else

namespace
{
adapler::trt_plugin::common::StaticRegistration<adapler::trt_plugin::ContributionDropPluginCreator> const
    gStaticRegistration{};
} // namespace

#endif
