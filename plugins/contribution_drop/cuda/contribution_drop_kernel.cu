/*
 * adapler::ContributionDrop v1 -- CUDA kernel (see contribution_drop_kernel.h for the contract).
 *
 *   1. ScoreRows (grid B, one block per row): z = cp_hidden . w2 for alive tokens, the row maximum and
 *      alive count, exp(z - max), the sum, p / sum and the torch model's second renormalisation
 *      p / (sum p + 1e-15), all float32 like the ONNX Runtime kernel (summation order differs, so a
 *      score within rounding of the threshold may fall either way: the spec's boundary note);
 *      threshold[b] = eta / n_alive.
 *   2. TokenDrop's compaction (compact.cuh) on those scores with per-row thresholds.
 *
 * Build (standalone .so for ctypes): python -m adapler.plugins.contribution_drop.cuda_library
 */
#include "contribution_drop_kernel.h"

#include "../../token_drop/cuda/compact.cuh"

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math_constants.h>
#include <stdint.h>

namespace
{

using adapler::compact::alignUp;
using adapler::compact::aligned;

constexpr int kRowBlock = 256;  // threads per row in ScoreRows (multiple of 32)
constexpr int kRowWarps = kRowBlock / 32;

__device__ inline float toFloat(float x)
{
    return x;
}

__device__ inline float toFloat(__half x)
{
    return __half2float(x);
}

// Block-wide reductions (every thread gets the result). `shared` holds kRowWarps floats.
__device__ inline float blockSum(float v, float* shared)
{
    for (int o = 16; o > 0; o >>= 1)
    {
        v += __shfl_xor_sync(0xffffffffu, v, o);
    }
    __syncthreads(); // shared may still be read by a previous reduction
    if ((threadIdx.x & 31) == 0)
    {
        shared[threadIdx.x >> 5] = v;
    }
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < kRowWarps; ++w)
    {
        total += shared[w];
    }
    return total;
}

__device__ inline float blockMax(float v, float* shared)
{
    for (int o = 16; o > 0; o >>= 1)
    {
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    }
    __syncthreads();
    if ((threadIdx.x & 31) == 0)
    {
        shared[threadIdx.x >> 5] = v;
    }
    __syncthreads();
    float best = -CUDART_INF_F;
#pragma unroll
    for (int w = 0; w < kRowWarps; ++w)
    {
        best = fmaxf(best, shared[w]);
    }
    return best;
}

template <typename Elem, typename Mask>
__global__ void ScoreRows(Elem const* __restrict__ cp_hidden, float const* __restrict__ w2,
    Mask const* __restrict__ mask, float const* __restrict__ eta, int64_t T, int64_t H,
    float* __restrict__ scores, float* __restrict__ threshold)
{
    __shared__ float shared[kRowWarps];
    int64_t const b = blockIdx.x;
    Mask const* m = mask + b * T;
    float* s = scores + b * T;

    float zmax = -CUDART_INF_F;
    float alive = 0.0f;
    for (int64_t t = threadIdx.x; t < T; t += blockDim.x)
    {
        if (m[t] != 1)
        {
            s[t] = -CUDART_INF_F;
            continue;
        }
        Elem const* c = cp_hidden + (b * T + t) * H;
        float z = 0.0f;
        for (int64_t h = 0; h < H; ++h)
        {
            z += toFloat(c[h]) * w2[h];
        }
        s[t] = z;
        zmax = fmaxf(zmax, z);
        alive += 1.0f;
    }
    zmax = blockMax(zmax, shared);
    float const n = blockSum(alive, shared); // exact: counts below 2^24

    float part = 0.0f;
    for (int64_t t = threadIdx.x; t < T; t += blockDim.x)
    {
        float const p = m[t] == 1 ? expf(s[t] - zmax) : 0.0f;
        s[t] = p;
        part += p;
    }
    float const sum = blockSum(part, shared);
    part = 0.0f;
    for (int64_t t = threadIdx.x; t < T; t += blockDim.x)
    {
        float const p = s[t] / sum; // a row without alive tokens gives NaN: dropped, [CLS] is kept anyway
        s[t] = p;
        part += p;
    }
    float const psum = blockSum(part, shared) + 1e-15f;
    for (int64_t t = threadIdx.x; t < T; t += blockDim.x)
    {
        s[t] = s[t] / psum;
    }
    if (threadIdx.x == 0)
    {
        threshold[b] = eta[0] / n; // n == 0: +inf
    }
}

template <typename Elem, typename Mask>
cudaError_t launch(void const* hidden, void const* cp_hidden, float const* w2, void const* mask, float const* eta,
    int64_t B, int64_t T, int64_t D, int64_t H, void* hidden_c, void* mask_c, int64_t* index, int64_t* L_out,
    int32_t* L_out32, void* workspace, cudaStream_t stream)
{
    auto* base = static_cast<char*>(workspace);
    auto* scores = reinterpret_cast<float*>(base);
    size_t offset = alignUp(static_cast<size_t>(B * T) * sizeof(float), 256);
    auto* threshold = reinterpret_cast<float*>(base + offset);
    offset += alignUp(static_cast<size_t>(B) * sizeof(float), 256);

    ScoreRows<Elem, Mask><<<static_cast<unsigned>(B), kRowBlock, 0, stream>>>(static_cast<Elem const*>(cp_hidden),
        w2, static_cast<Mask const*>(mask), eta, T, H, scores, threshold);
    cudaError_t const err = cudaGetLastError();
    if (err != cudaSuccess)
    {
        return err;
    }
    return adapler::compact::compactRows<Mask>(hidden, sizeof(Elem), scores, static_cast<Mask const*>(mask), threshold,
        B, B, T, D, hidden_c, static_cast<Mask*>(mask_c), index, L_out, L_out32, base + offset, stream);
}

} // namespace

extern "C" size_t adapler_contribution_drop_workspace_size(int64_t B, int64_t T)
{
    if (B <= 0 || T <= 0)
    {
        return 256;
    }
    return alignUp(static_cast<size_t>(B * T) * sizeof(float), 256) + alignUp(static_cast<size_t>(B) * sizeof(float), 256)
        + adapler::compact::workspaceSize(B, T);
}

extern "C" int adapler_contribution_drop_launch(int dtype, int mask_type, void const* hidden, void const* cp_hidden,
    float const* w2, void const* mask, float const* eta, int64_t B, int64_t T, int64_t D, int64_t H, void* hidden_c,
    void* mask_c, int64_t* index, int64_t* L_out, int32_t* L_out32, void* workspace, cudaStream_t stream)
{
    if (L_out == nullptr || (dtype != ADAPLER_CD_FLOAT32 && dtype != ADAPLER_CD_FLOAT16)
        || (mask_type != ADAPLER_CD_MASK_INT64 && mask_type != ADAPLER_CD_MASK_INT32) || B < 0 || T < 0 || D < 0
        || H < 0)
    {
        return 1;
    }
    cudaError_t err = adapler::compact::resetLength(L_out, L_out32, B, stream);
    if (err != cudaSuccess || B == 0)
    {
        return static_cast<int>(err);
    }
    if (T < 1 || T > INT32_MAX || H < 1 || workspace == nullptr || !aligned(workspace, 256))
    {
        return 1;
    }
    bool const half = dtype == ADAPLER_CD_FLOAT16;
    bool const i32 = mask_type == ADAPLER_CD_MASK_INT32;
    if (half)
    {
        err = i32 ? launch<__half, int32_t>(hidden, cp_hidden, w2, mask, eta, B, T, D, H, hidden_c, mask_c, index, L_out,
                  L_out32, workspace, stream)
                  : launch<__half, int64_t>(hidden, cp_hidden, w2, mask, eta, B, T, D, H, hidden_c, mask_c, index, L_out,
                      L_out32, workspace, stream);
    }
    else
    {
        err = i32 ? launch<float, int32_t>(hidden, cp_hidden, w2, mask, eta, B, T, D, H, hidden_c, mask_c, index, L_out,
                  L_out32, workspace, stream)
                  : launch<float, int64_t>(hidden, cp_hidden, w2, mask, eta, B, T, D, H, hidden_c, mask_c, index, L_out,
                      L_out32, workspace, stream);
    }
    return static_cast<int>(err);
}

extern "C" char const* adapler_contribution_drop_version(void)
{
    return "adapler-contribution-drop-cuda 1";
}
