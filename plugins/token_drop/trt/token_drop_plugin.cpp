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

#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <new>

using namespace nvinfer1;

namespace adapler
{
namespace trt_plugin
{
using common::alignUp;
using common::kSizeTensorType;
using common::logError;

// ------------------------------------------------------------------------------------------------
// TokenDropPlugin
// ------------------------------------------------------------------------------------------------

TokenDropPlugin::TokenDropPlugin() = default;

TokenDropPlugin::TokenDropPlugin(TokenDropPlugin const& /*other*/)
    : mFieldsToSerialize{}
{
}

IPluginCapability* TokenDropPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    }
    return nullptr;
}

IPluginV3* TokenDropPlugin::clone() noexcept
{
    try
    {
        return new TokenDropPlugin(*this);
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return nullptr;
}

char const* TokenDropPlugin::getPluginName() const noexcept
{
    return kTOKEN_DROP_NAME;
}

char const* TokenDropPlugin::getPluginVersion() const noexcept
{
    return kTOKEN_DROP_VERSION;
}

char const* TokenDropPlugin::getPluginNamespace() const noexcept
{
    return kTOKEN_DROP_NAMESPACE;
}

int32_t TokenDropPlugin::getNbOutputs() const noexcept
{
    return kNB_OUTPUTS;
}

int32_t TokenDropPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    if (in == nullptr || out == nullptr || nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS)
    {
        logError("TokenDrop expects 4 inputs (hidden, scores, mask, threshold) and 4 outputs");
        return -1;
    }
    return 0;
}

bool TokenDropPlugin::supportsFormatCombination(
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
    IDimensionExpr const* batch = inputs[0].d[0];
    IDimensionExpr const* seq = inputs[0].d[1];
    IDimensionExpr const* dim = inputs[0].d[2];

    // L is data-dependent: 1 <= L <= T. Autotune at about half the input length (ceil keeps opt >= 1).
    IDimensionExpr const* opt = exprBuilder.operation(DimensionOperation::kCEIL_DIV, *seq, *exprBuilder.constant(2));
    IDimensionExpr const* L = exprBuilder.declareSizeTensor(kSIZE_TENSOR_INDEX, *opt, *seq);
    if (opt == nullptr || L == nullptr)
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
    outputs[kSIZE_TENSOR_INDEX].nbDims = 0; // size tensors must be 0-D
    return 0;
}

size_t TokenDropPlugin::workspaceBytes(int64_t B, int64_t T) noexcept
{
    return common::workspaceWithLengthSlot(adapler_token_drop_workspace_size(B, T));
}

size_t TokenDropPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    if (inputs == nullptr || nbInputs != kNB_INPUTS || inputs[0].max.nbDims != 3)
    {
        return 0;
    }
    return workspaceBytes(inputs[0].max.d[0], inputs[0].max.d[1]);
}

int32_t TokenDropPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    if (in == nullptr || out == nullptr || nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS)
    {
        return -1;
    }
    return 0;
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

    void* scratch = nullptr;
    int64_t* lSlot = nullptr;
    common::carveWorkspace(workspace, adapler_token_drop_workspace_size(B, T), scratch, lSlot);

#if ADAPLER_SIZE_TENSOR_INT64
    int64_t* L64 = static_cast<int64_t*>(outputs[kSIZE_TENSOR_INDEX]); // kernel atomically maxes into it
    int32_t* L32 = nullptr;
#else
    int64_t* L64 = lSlot;
    int32_t* L32 = static_cast<int32_t*>(outputs[kSIZE_TENSOR_INDEX]);
#endif
    (void) lSlot;

    int const status = adapler_token_drop_launch(dtype, inputs[0], static_cast<float const*>(inputs[1]),
        static_cast<int64_t const*>(inputs[2]), static_cast<float const*>(inputs[3]), thresholdLen, B, T, D, outputs[0],
        static_cast<int64_t*>(outputs[1]), static_cast<int64_t*>(outputs[2]), L64, L32, scratch, stream);
    if (status != 0)
    {
        logError("TokenDrop: CUDA launch failed");
        return -1;
    }
    return 0;
}

IPluginV3* TokenDropPlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept
{
    return clone(); // no per-context resources
}

PluginFieldCollection const* TokenDropPlugin::getFieldsToSerialize() noexcept
{
    mFieldsToSerialize.nbFields = 0;
    mFieldsToSerialize.fields = nullptr;
    return &mFieldsToSerialize;
}

// ------------------------------------------------------------------------------------------------
// TokenDropPluginCreator
// ------------------------------------------------------------------------------------------------

char const* TokenDropPluginCreator::getPluginName() const noexcept
{
    return kTOKEN_DROP_NAME;
}

char const* TokenDropPluginCreator::getPluginVersion() const noexcept
{
    return kTOKEN_DROP_VERSION;
}

char const* TokenDropPluginCreator::getPluginNamespace() const noexcept
{
    return kTOKEN_DROP_NAMESPACE;
}

PluginFieldCollection const* TokenDropPluginCreator::getFieldNames() noexcept
{
    return mFieldNames.collection();
}

IPluginV3* TokenDropPluginCreator::createPlugin(
    char const* /*name*/, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
{
    try
    {
        // TokenDrop has no attributes of its own; the parser forwards plugin_version / plugin_namespace
        // because getFieldNames() lists them, and a mismatch fails here instead of building silently.
        if (!common::fieldsMatch(fc, kTOKEN_DROP_NAME, kTOKEN_DROP_VERSION))
        {
            return nullptr;
        }
        return new TokenDropPlugin();
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return nullptr;
}

} // namespace trt_plugin
} // namespace adapler

// ------------------------------------------------------------------------------------------------
// Registration
// ------------------------------------------------------------------------------------------------

#if defined(ADAPLER_TRT_DYNAMIC_REGISTRATION) && ADAPLER_TRT_DYNAMIC_REGISTRATION

extern "C" ADAPLER_TD_API void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    adapler::trt_plugin::common::loggerFinder() = finder;
}

extern "C" ADAPLER_TD_API nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static adapler::trt_plugin::TokenDropPluginCreator sCreator;
    static nvinfer1::IPluginCreatorInterface* const kCreators[] = {&sCreator};
    nbCreators = 1;
    return kCreators;
}

#else

namespace
{
adapler::trt_plugin::common::StaticRegistration<adapler::trt_plugin::TokenDropPluginCreator> const gStaticRegistration{};
} // namespace

#endif
