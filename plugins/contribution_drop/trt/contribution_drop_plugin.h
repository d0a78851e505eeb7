/*
 * adapler::ContributionDrop v1 as a TensorRT IPluginV3 (IPluginV3OneCore / Build / Runtime): AdapLeR's
 * whole selection before a layer in one plugin (spec: ../README.md), with TokenDrop's data-dependent
 * output length declared through a size tensor.
 *
 *   inputs : 0 hidden    [B, T, D] FLOAT or HALF
 *            1 cp_hidden [B, T, H] the type of hidden (the CP's hidden layer after its activation)
 *            2 w2        [H]       FLOAT
 *            3 mask      [B, T]    INT64 or INT32
 *            4 eta       [1]       FLOAT
 *   outputs: 0 hidden_c  [B, L, D] the type of hidden
 *            1 mask_c    [B, L]    the type of mask
 *            2 index     [B, L]    INT64
 *            3 L         0-D size tensor (IExprBuilder::declareSizeTensor(3, opt = ceil(T/2), upper = T))
 *
 * The ONNX node has 3 outputs; TensorRT's parser maps them to the first 3 plugin outputs. Name
 * "ContributionDrop", version "1", namespace "adapler" (ONNX attributes plugin_namespace / plugin_version).
 * The kernel is ../cuda/contribution_drop_kernel.cu (scores and thresholds, then TokenDrop's compaction).
 *
 * Compiled in CI against NVIDIA's TensorRT 10.3 and 11.1 headers (tests/test_trt_plugin_build.py);
 * never run there: that needs the TensorRT runtime and a GPU.
 */
#ifndef ADAPLER_CONTRIBUTION_DROP_PLUGIN_H
#define ADAPLER_CONTRIBUTION_DROP_PLUGIN_H

#include "NvInferRuntime.h"
#include "plugin_common.h"

#include <cstdint>

namespace adapler
{
namespace trt_plugin
{

class ContributionDropPlugin : public common::PluginBase<ContributionDropPlugin>
{
public:
    static constexpr char const* kNAME{"ContributionDrop"};
    static constexpr char const* kVERSION{"1"};
    static constexpr int32_t kNB_INPUTS{5};
    static constexpr int32_t kNB_OUTPUTS{4};
    static constexpr char const* kARITY{
        "ContributionDrop expects 5 inputs (hidden, cp_hidden, w2, mask, eta) and 4 outputs"};

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

using ContributionDropPluginCreator = common::PluginCreator<ContributionDropPlugin>;

} // namespace trt_plugin
} // namespace adapler

#endif // ADAPLER_CONTRIBUTION_DROP_PLUGIN_H
