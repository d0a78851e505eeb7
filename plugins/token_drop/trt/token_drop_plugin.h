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

namespace adapler
{
namespace trt_plugin
{

class TokenDropPlugin : public common::PluginBase<TokenDropPlugin>
{
public:
    static constexpr char const* kNAME{"TokenDrop"};
    static constexpr char const* kVERSION{"1"};
    static constexpr int32_t kNB_INPUTS{4};
    static constexpr int32_t kNB_OUTPUTS{4};
    static constexpr char const* kARITY{"TokenDrop expects 4 inputs (hidden, scores, mask, threshold) and 4 outputs"};

    // IPluginV3OneBuild (the rest of IPluginV3 is common::PluginBase)
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs,
        int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept override;

    // IPluginV3OneRuntime
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;

    //! Workspace bytes for a [B, T] problem: kernel scratch + an INT64 slot for L + alignment slack.
    static size_t workspaceBytes(int64_t B, int64_t T) noexcept;
};

using TokenDropPluginCreator = common::PluginCreator<TokenDropPlugin>;

} // namespace trt_plugin
} // namespace adapler

#endif // ADAPLER_TOKEN_DROP_PLUGIN_H
