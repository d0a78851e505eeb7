/*
 * adapler::TokenDrop v1 -- CUDA compaction kernel (fp32 and fp16 hidden states).
 * See token_drop_kernel.h for the contract. The two kernels (scan rows, write rows; no host
 * synchronisation) live in compact.cuh, shared with ContributionDrop's CUDA kernel.
 *
 * Build (standalone .so for ctypes): python -m adapler.plugins.token_drop.cuda_library
 */
#include "token_drop_kernel.h"

#include "compact.cuh"

#include <cuda_runtime.h>
#include <stdint.h>

using adapler::compact::aligned;

extern "C" size_t adapler_token_drop_workspace_size(int64_t B, int64_t T)
{
    return adapler::compact::workspaceSize(B, T);
}

extern "C" int adapler_token_drop_launch(int dtype, void const* hidden, float const* scores, int64_t const* mask,
    float const* threshold, int64_t threshold_len, int64_t B, int64_t T, int64_t D, void* hidden_c,
    int64_t* mask_c, int64_t* index, int64_t* L_out, int32_t* L_out32, void* workspace, cudaStream_t stream)
{
    if (L_out == nullptr || (dtype != ADAPLER_TD_FLOAT32 && dtype != ADAPLER_TD_FLOAT16) || B < 0 || T < 0 || D < 0)
    {
        return 1;
    }
    cudaError_t const err = adapler::compact::resetLength(L_out, L_out32, B, stream);
    if (err != cudaSuccess || B == 0)
    {
        return static_cast<int>(err);
    }
    if (T < 1 || T > INT32_MAX || (threshold_len != 1 && threshold_len != B) || workspace == nullptr
        || !aligned(workspace, 256))
    {
        return 1;
    }
    return static_cast<int>(adapler::compact::compactRows<int64_t>(hidden, dtype == ADAPLER_TD_FLOAT32 ? 4 : 2,
        scores, mask, threshold, threshold_len, B, T, D, hidden_c, mask_c, index, L_out, L_out32, workspace, stream));
}

extern "C" char const* adapler_token_drop_version(void)
{
    return "adapler-token-drop-cuda 1";
}
