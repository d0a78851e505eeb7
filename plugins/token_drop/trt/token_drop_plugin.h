/*
 * adapler::TokenDrop v1 as a TensorRT IPluginV3 (IPluginV3OneCore / Build / Runtime) with a
 * data-dependent output length declared through a size tensor.
 *
 *   inputs : 0 hidden    [B, T, D] FLOAT or HALF
 *            1 scores    [B, T]    FLOAT
 *            2 mask      [B, T]    INT64
 *            3 threshold [B] or [1] FLOAT
 *   outputs: 0 hidden_c  [B, L, D] same type as hidden
 *            1 mask_c    [B, L]    INT64
 *            2 index     [B, L]    INT64
 *            3 L         0-D size tensor (IExprBuilder::declareSizeTensor(3, opt = ceil(T/2), upper = T))
 *
 * The ONNX node has 3 outputs; TensorRT's parser maps them to the first 3 plugin outputs.
 * Name "TokenDrop", version "1", namespace "adapler" (ONNX attributes plugin_namespace /
 * plugin_version select it; see docs/deploy.md section 5.4).
 *
 * Compiled in CI against NVIDIA's TensorRT 10.3 and 11.1 headers (tests/test_trt_plugin_build.py);
 * never run there: that needs the TensorRT runtime and a GPU (see README.md in this folder).
 */
#ifndef ADAPLER_TOKEN_DROP_PLUGIN_H
#define ADAPLER_TOKEN_DROP_PLUGIN_H

#include "NvInferRuntime.h"
#include "plugin_common.h"

#include <cstdint>
#include <string>
#include <vector>

namespace adapler
{
namespace trt_plugin
{

constexpr char const* kTOKEN_DROP_NAME{"TokenDrop"};
constexpr char const* kTOKEN_DROP_VERSION{"1"};
constexpr char const* kTOKEN_DROP_NAMESPACE{"adapler"};
constexpr int32_t kNB_INPUTS{4};
constexpr int32_t kNB_OUTPUTS{4};
constexpr int32_t kSIZE_TENSOR_INDEX{3};

class TokenDropPlugin : public nvinfer1::IPluginV3,
                        public nvinfer1::IPluginV3OneCore,
                        public nvinfer1::IPluginV3OneBuild,
                        public nvinfer1::IPluginV3OneRuntime
{
public:
    TokenDropPlugin();
    TokenDropPlugin(TokenDropPlugin const& other);
    TokenDropPlugin& operator=(TokenDropPlugin const&) = delete;
    ~TokenDropPlugin() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs,
        int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

    //! Workspace bytes for a [B, T] problem: kernel scratch + an INT64 slot for L + alignment slack.
    static size_t workspaceBytes(int64_t B, int64_t T) noexcept;

private:
    nvinfer1::PluginFieldCollection mFieldsToSerialize{}; // TokenDrop has no attributes
};

class TokenDropPluginCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    TokenDropPluginCreator() = default;
    ~TokenDropPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    // plugin_version / plugin_namespace, so that the ONNX parser forwards them and a mismatch is
    // reported instead of silently accepted; other fields are ignored.
    common::VersionFields mFieldNames;
};

} // namespace trt_plugin
} // namespace adapler

#endif // ADAPLER_TOKEN_DROP_PLUGIN_H
