/*
 * What every adapler TensorRT plugin shares (TokenDrop here, ContributionDrop in
 * plugins/contribution_drop/trt/): logging through the logger finder, the plugin_version /
 * plugin_namespace field check the ONNX parser's fields go through, the size-tensor type, and
 * static registration, and the IPluginV3 methods that are the same for every op (PluginBase, PluginCreator:
 * an op's plugin implements only its types, shapes, workspace and enqueue). Header-only; the libraries
 * are built with hidden visibility (CMakeLists.txt),
 * so each plugin library keeps its own copy of these functions and its own logger finder.
 */
#ifndef ADAPLER_TRT_PLUGIN_COMMON_H
#define ADAPLER_TRT_PLUGIN_COMMON_H

#include "NvInferRuntime.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <vector>

// Size-tensor element type. Both supported header sets state the contract in
// IPluginV3OneBuild::getOutputDataTypes: "The data type for any size tensor outputs must be
// `DataType::kINT32`" (NvInferRuntime.h, TensorRT 10.3.0 line 832 and 11.1 line 913), so INT32
// is the default for 10.x and 11.x alike. -DADAPLER_SIZE_TENSOR_INT64=1 selects INT64 (NVIDIA's
// NonZero sample declares INT64 on some 11.x releases) should a runtime reject INT32.
#ifndef ADAPLER_SIZE_TENSOR_INT64
#define ADAPLER_SIZE_TENSOR_INT64 0
#endif

namespace adapler
{
namespace trt_plugin
{
namespace common
{

constexpr char const* kNAMESPACE{"adapler"};
constexpr int32_t kSIZE_TENSOR_INDEX{3}; // every op's outputs: hidden_c, mask_c, index, then the size tensor L
constexpr nvinfer1::DataType kSizeTensorType
    = ADAPLER_SIZE_TENSOR_INT64 ? nvinfer1::DataType::kINT64 : nvinfer1::DataType::kINT32;

//! Set by setLoggerFinder() (dynamic registration); null for the static library.
inline nvinfer1::ILoggerFinder*& loggerFinder() noexcept
{
    static nvinfer1::ILoggerFinder* sFinder{nullptr};
    return sFinder;
}

inline void logError(char const* msg) noexcept
{
    nvinfer1::ILogger* logger = loggerFinder() != nullptr ? loggerFinder()->findLogger() : nullptr;
    if (logger != nullptr)
    {
        logger->log(nvinfer1::ILogger::Severity::kERROR, msg);
    }
    else
    {
        std::fprintf(stderr, "[adapler] %s\n", msg);
    }
}

inline size_t alignUp(size_t x, size_t a) noexcept
{
    return (x + a - 1) / a * a;
}

inline int64_t volume(nvinfer1::Dims const& d) noexcept
{
    int64_t v = 1;
    for (int32_t i = 0; i < d.nbDims; ++i)
    {
        v *= d.d[i];
    }
    return v;
}

//! Workspace of a plugin around a kernel needing `kernelBytes`: the scratch, one 256-byte slot for L
//! as INT64, and 256 bytes of slack to align TensorRT's pointer.
inline size_t workspaceWithLengthSlot(size_t kernelBytes) noexcept
{
    return alignUp(kernelBytes, 256) + 256 + 256;
}

//! Where a kernel writes inside enqueue: its scratch (256-aligned in TensorRT's workspace) and L, as int64
//! (a workspace slot after the scratch, or the size tensor itself when it is INT64) and, for an INT32 size
//! tensor, an int32 copy into it.
struct EnqueueBuffers
{
    void* scratch;
    int64_t* L64;
    int32_t* L32;
};

inline EnqueueBuffers enqueueBuffers(void* workspace, size_t kernelBytes, void* sizeTensor) noexcept
{
    auto* scratch = reinterpret_cast<void*>(alignUp(reinterpret_cast<uintptr_t>(workspace), 256));
    auto* slot = reinterpret_cast<int64_t*>(static_cast<char*>(scratch) + alignUp(kernelBytes, 256));
#if ADAPLER_SIZE_TENSOR_INT64
    (void) slot;
    return {scratch, static_cast<int64_t*>(sizeTensor), nullptr};
#else
    return {scratch, slot, static_cast<int32_t*>(sizeTensor)};
#endif
}

//! The descriptor at `pos` when the arguments are sane and its format is linear (the only one supported),
//! else null: the common start of every op's supportsFormatCombination.
inline nvinfer1::PluginTensorDesc const* linearDesc(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut,
    int32_t nbInputs, int32_t nbOutputs, int32_t wantInputs, int32_t wantOutputs) noexcept
{
    if (inOut == nullptr || nbInputs != wantInputs || nbOutputs != wantOutputs || pos < 0
        || pos >= nbInputs + nbOutputs)
    {
        return nullptr;
    }
    return inOut[pos].desc.format == nvinfer1::TensorFormat::kLINEAR ? &inOut[pos].desc : nullptr;
}

//! A kCHAR plugin field as a string. The ONNX parser passes string attributes NUL-terminated with
//! length = size + 1, the Python API without the NUL: read at most `length` bytes, stop at a NUL.
inline std::string fieldString(nvinfer1::PluginField const& f)
{
    auto const* chars = static_cast<char const*>(f.data);
    if (chars == nullptr || f.length <= 0)
    {
        return {};
    }
    auto const n = static_cast<size_t>(f.length);
    void const* nul = std::memchr(chars, '\0', n);
    return std::string(chars, nul != nullptr ? static_cast<char const*>(nul) - chars : n);
}

//! Checks the plugin_version / plugin_namespace fields of `fc` against `op` v`version`; other fields are
//! ignored. A mismatch is logged with its reason.
inline bool fieldsMatch(nvinfer1::PluginFieldCollection const* fc, char const* op, char const* version)
{
    using nvinfer1::PluginFieldType;
    if (fc == nullptr || fc->nbFields <= 0)
    {
        return true; // nothing to check: the registry lookup already matched name, version, namespace
    }
    if (fc->fields == nullptr)
    {
        logError((std::string(op) + ": PluginFieldCollection with nbFields > 0 but no fields").c_str());
        return false;
    }
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        nvinfer1::PluginField const& f = fc->fields[i];
        char const* want = nullptr;
        if (f.name != nullptr && std::strcmp(f.name, "plugin_version") == 0)
        {
            want = version;
        }
        else if (f.name != nullptr && std::strcmp(f.name, "plugin_namespace") == 0)
        {
            want = kNAMESPACE;
        }
        if (want == nullptr)
        {
            continue;
        }
        if (f.type != PluginFieldType::kCHAR)
        {
            logError((std::string(op) + ": field " + f.name + " must be a string (kCHAR)").c_str());
            return false;
        }
        std::string const got = fieldString(f);
        if (got != want)
        {
            logError((std::string(op) + ": " + f.name + "='" + got + "' but this plugin is '" + want + "'").c_str());
            return false;
        }
    }
    return true;
}

//! The fields a creator lists (getFieldNames): plugin_version and plugin_namespace, so that the ONNX
//! parser forwards the node's attributes and createPlugin can check them.
class VersionFields
{
public:
    VersionFields()
        : mFields{nvinfer1::PluginField("plugin_version", nullptr, nvinfer1::PluginFieldType::kCHAR, 0),
            nvinfer1::PluginField("plugin_namespace", nullptr, nvinfer1::PluginFieldType::kCHAR, 0)}
    {
        mCollection.nbFields = static_cast<int32_t>(mFields.size());
        mCollection.fields = mFields.data();
    }
    VersionFields(VersionFields const&) = delete; // mCollection points into mFields
    VersionFields& operator=(VersionFields const&) = delete;

    nvinfer1::PluginFieldCollection const* collection() const noexcept
    {
        return &mCollection;
    }

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mCollection{};
};

//! The IPluginV3 methods every adapler op shares. `Op` (CRTP) provides kNAME, kVERSION, kNB_INPUTS,
//! kNB_OUTPUTS, kARITY (the message for a wrong input/output count) and
//! `static size_t workspaceBytes(int64_t B, int64_t T)`; input 0 is always hidden [B, T, D].
template <typename Op>
class PluginBase : public nvinfer1::IPluginV3,
                   public nvinfer1::IPluginV3OneCore,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime
{
public:
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override
    {
        switch (type)
        {
        case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
        case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
        case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
        }
        return nullptr;
    }

    nvinfer1::IPluginV3* clone() noexcept override
    {
        try
        {
            return new Op(static_cast<Op const&>(*this));
        }
        catch (std::exception const& e)
        {
            logError(e.what());
        }
        return nullptr;
    }

    char const* getPluginName() const noexcept override
    {
        return Op::kNAME;
    }
    char const* getPluginVersion() const noexcept override
    {
        return Op::kVERSION;
    }
    char const* getPluginNamespace() const noexcept override
    {
        return kNAMESPACE;
    }
    int32_t getNbOutputs() const noexcept override
    {
        return Op::kNB_OUTPUTS;
    }

    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override
    {
        if (in == nullptr || out == nullptr || nbInputs != Op::kNB_INPUTS || nbOutputs != Op::kNB_OUTPUTS)
        {
            logError(Op::kARITY);
            return -1;
        }
        return 0;
    }

    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept override
    {
        if (inputs == nullptr || nbInputs != Op::kNB_INPUTS || inputs[0].max.nbDims != 3)
        {
            return 0;
        }
        return Op::workspaceBytes(inputs[0].max.d[0], inputs[0].max.d[1]); // the profile's largest B and T
    }

    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override
    {
        return in == nullptr || out == nullptr || nbInputs != Op::kNB_INPUTS || nbOutputs != Op::kNB_OUTPUTS ? -1 : 0;
    }

    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept override
    {
        return clone(); // no per-context resources
    }

    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override
    {
        mFieldsToSerialize.nbFields = 0; // the ops have no attributes
        mFieldsToSerialize.fields = nullptr;
        return &mFieldsToSerialize;
    }

private:
    nvinfer1::PluginFieldCollection mFieldsToSerialize{};
};

//! The compacted outputs' shapes, TokenDrop's for every op: hidden_c [B, L, D], mask_c and index [B, L],
//! and output 3 the 0-D size tensor L, 1 <= L <= T (autotuned at about half the input length).
inline int32_t compactedOutputShapes(nvinfer1::DimsExprs const& hidden, nvinfer1::DimsExprs* outputs,
    nvinfer1::IExprBuilder& exprBuilder) noexcept
{
    using nvinfer1::DimensionOperation;
    nvinfer1::IDimensionExpr const* seq = hidden.d[1];
    nvinfer1::IDimensionExpr const* opt
        = exprBuilder.operation(DimensionOperation::kCEIL_DIV, *seq, *exprBuilder.constant(2));
    nvinfer1::IDimensionExpr const* L
        = opt != nullptr ? exprBuilder.declareSizeTensor(kSIZE_TENSOR_INDEX, *opt, *seq) : nullptr;
    if (L == nullptr)
    {
        return -1;
    }
    outputs[0].nbDims = 3;
    outputs[0].d[0] = hidden.d[0];
    outputs[0].d[1] = L;
    outputs[0].d[2] = hidden.d[2];
    for (int32_t i = 1; i <= 2; ++i)
    {
        outputs[i].nbDims = 2;
        outputs[i].d[0] = hidden.d[0];
        outputs[i].d[1] = L;
    }
    outputs[kSIZE_TENSOR_INDEX].nbDims = 0; // size tensors are 0-D
    return 0;
}

//! The creator of `Op`: lists plugin_version / plugin_namespace (so the ONNX parser forwards the node's
//! attributes) and refuses a mismatch with a logged reason; other fields are ignored.
template <typename Op>
class PluginCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    char const* getPluginName() const noexcept override
    {
        return Op::kNAME;
    }
    char const* getPluginVersion() const noexcept override
    {
        return Op::kVERSION;
    }
    char const* getPluginNamespace() const noexcept override
    {
        return kNAMESPACE;
    }
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override
    {
        return mFieldNames.collection();
    }
    nvinfer1::IPluginV3* createPlugin(char const* /*name*/, nvinfer1::PluginFieldCollection const* fc,
        nvinfer1::TensorRTPhase /*phase*/) noexcept override
    {
        try
        {
            return fieldsMatch(fc, Op::kNAME, Op::kVERSION) ? new Op() : nullptr;
        }
        catch (std::exception const& e)
        {
            logError(e.what());
        }
        return nullptr;
    }

private:
    VersionFields mFieldNames;
};

//! Registers one creator of type Creator from a static initializer (the non-_dyn library).
template <typename Creator>
struct StaticRegistration
{
    StaticRegistration()
    {
        static Creator sCreator;
        if (!getPluginRegistry()->registerCreator(sCreator, kNAMESPACE))
        {
            logError((std::string("registerCreator(adapler::") + sCreator.getPluginName() + " v"
                + sCreator.getPluginVersion() + ") failed (already registered?)")
                         .c_str());
        }
    }
};

} // namespace common
} // namespace trt_plugin
} // namespace adapler

#if defined(_WIN32)
#define ADAPLER_TRT_API __declspec(dllexport)
#else
#define ADAPLER_TRT_API __attribute__((visibility("default")))
#endif

// One plugin library registers one creator: with ADAPLER_TRT_DYNAMIC_REGISTRATION (the _dyn library) through
// getCreators() / setLoggerFinder() for IPluginRegistry::loadLibrary, otherwise from a static initializer when
// the library is loaded. Loading one library both ways would register the creator twice.
#if defined(ADAPLER_TRT_DYNAMIC_REGISTRATION) && ADAPLER_TRT_DYNAMIC_REGISTRATION
#define ADAPLER_TRT_REGISTER_PLUGIN(CreatorType)                                                                       \
    extern "C" ADAPLER_TRT_API void setLoggerFinder(nvinfer1::ILoggerFinder* finder)                                  \
    {                                                                                                                  \
        ::adapler::trt_plugin::common::loggerFinder() = finder;                                                        \
    }                                                                                                                  \
    extern "C" ADAPLER_TRT_API nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)             \
    {                                                                                                                  \
        static CreatorType sCreator;                                                                                   \
        static nvinfer1::IPluginCreatorInterface* const kCreators[] = {&sCreator};                                     \
        nbCreators = 1;                                                                                                \
        return kCreators;                                                                                              \
    }
#else
#define ADAPLER_TRT_REGISTER_PLUGIN(CreatorType)                                                                       \
    namespace                                                                                                          \
    {                                                                                                                  \
    ::adapler::trt_plugin::common::StaticRegistration<CreatorType> const gStaticRegistration{};                        \
    }
#endif

#endif // ADAPLER_TRT_PLUGIN_COMMON_H
