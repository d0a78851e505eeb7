/*
 * What every adapler TensorRT plugin shares (TokenDrop here, ContributionDrop in
 * plugins/contribution_drop/trt/): logging through the logger finder, the plugin_version /
 * plugin_namespace field check the ONNX parser's fields go through, the size-tensor type, and
 * static registration. Header-only; the libraries are built with hidden visibility (CMakeLists.txt),
 * so each plugin library keeps its own copy of these functions and its own logger finder.
 */
#ifndef ADAPLER_TRT_PLUGIN_COMMON_H
#define ADAPLER_TRT_PLUGIN_COMMON_H

#include "NvInferRuntime.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
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

//! The kernel scratch (256-aligned inside `workspace`) and the INT64 slot for L after it.
inline void carveWorkspace(void* workspace, size_t kernelBytes, void*& scratch, int64_t*& lengthSlot) noexcept
{
    auto const base = reinterpret_cast<uintptr_t>(workspace);
    scratch = reinterpret_cast<void*>(alignUp(base, 256));
    lengthSlot = reinterpret_cast<int64_t*>(static_cast<char*>(scratch) + alignUp(kernelBytes, 256));
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

#endif // ADAPLER_TRT_PLUGIN_COMMON_H
