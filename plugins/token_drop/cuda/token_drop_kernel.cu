/*
 * adapler::TokenDrop v1 -- CUDA compaction kernel (fp32 and fp16 hidden states).
 * See token_drop_kernel.h for the contract. Two kernels, no host synchronisation:
 *
 *   1. td_scan_rows  (grid B, one block per row): keep flags -> per-row exclusive prefix with
 *      warp ballots, writes the stable order of kept positions to workspace order[b, 0:kept_b],
 *      counts[b] = kept_b, and atomicMax(L_out, kept_b).
 *   2. td_write_rows (grid T x B, one block per output slot): reads L from device memory, exits
 *      for slot >= L, otherwise writes index / mask_c and copies (or zeroes) one hidden row.
 *      Rows are copied as raw bits (uint4 / uint32 / uint16 vectors), so fp32 and fp16 are exact
 *      and the padding zero is +0.0 in both.
 *
 * Build (standalone .so for ctypes):  see Makefile / CMakeLists.txt in this folder.
 */
#include "token_drop_kernel.h"

#include <cuda_runtime.h>
#include <stdint.h>

namespace
{

constexpr int kScanBlock = 256;            // threads per row in td_scan_rows (multiple of 32)
constexpr int kWarps = kScanBlock / 32;
constexpr int64_t kMaxGridY = 65535;       // CUDA limit on gridDim.y

__host__ __device__ inline size_t alignUp(size_t x, size_t a)
{
    return (x + a - 1) / a * a;
}

__global__ void td_scan_rows(float const* __restrict__ scores, int64_t const* __restrict__ mask,
    float const* __restrict__ threshold, int64_t threshold_len, int64_t T, int32_t* __restrict__ order,
    int64_t* __restrict__ counts, unsigned long long* __restrict__ L_out)
{
    __shared__ int warpCounts[kWarps];
    int64_t const b = blockIdx.x;
    float const thr = threshold[threshold_len == 1 ? 0 : b];
    float const* s = scores + b * T;
    int64_t const* m = mask + b * T;
    int32_t* o = order + b * T;
    int const lane = threadIdx.x & 31;
    int const warp = threadIdx.x >> 5;

    int64_t kept = 0; // kept positions of this row before the current chunk
    for (int64_t t0 = 0; t0 < T; t0 += kScanBlock)
    {
        int64_t const t = t0 + threadIdx.x;
        bool keep = false;
        if (t < T)
        {
            // [CLS] rule; NaN scores compare false under >=, so they are dropped.
            keep = (t == 0) || (m[t] == 1 && s[t] >= thr);
        }
        unsigned const ballot = __ballot_sync(0xffffffffu, keep);
        int const inWarp = __popc(ballot & ((1u << lane) - 1u));
        if (lane == 0)
        {
            warpCounts[warp] = __popc(ballot);
        }
        __syncthreads();
        int warpOffset = 0;
        int chunkTotal = 0;
#pragma unroll
        for (int w = 0; w < kWarps; ++w)
        {
            int const c = warpCounts[w];
            warpOffset += (w < warp) ? c : 0;
            chunkTotal += c;
        }
        if (keep)
        {
            o[kept + warpOffset + inWarp] = static_cast<int32_t>(t); // ascending = stable
        }
        kept += chunkTotal;
        __syncthreads(); // warpCounts is reused by the next chunk
    }
    if (threadIdx.x == 0)
    {
        counts[b] = kept;
        atomicMax(L_out, static_cast<unsigned long long>(kept));
    }
}

template <typename VecT>
__global__ void td_write_rows(VecT const* __restrict__ hidden, int32_t const* __restrict__ order,
    int64_t const* __restrict__ counts, unsigned long long const* __restrict__ L_in, int64_t B, int64_t T,
    int64_t rowVecs, VecT* __restrict__ hidden_c, int64_t* __restrict__ mask_c, int64_t* __restrict__ index,
    int32_t* __restrict__ L_out32)
{
    int64_t const L = static_cast<int64_t>(*L_in);
    int64_t const slot = blockIdx.x;
    if (L_out32 != nullptr && slot == 0 && blockIdx.y == 0 && threadIdx.x == 0)
    {
        *L_out32 = static_cast<int32_t>(L);
    }
    if (slot >= L)
    {
        return; // grid is sized for the upper bound T
    }
    for (int64_t b = blockIdx.y; b < B; b += gridDim.y)
    {
        int64_t const src = slot < counts[b] ? static_cast<int64_t>(order[b * T + slot]) : -1;
        int64_t const outRow = b * L + slot;
        if (threadIdx.x == 0)
        {
            index[outRow] = src;
            mask_c[outRow] = src >= 0 ? 1 : 0;
        }
        VecT* dst = hidden_c + outRow * rowVecs;
        if (src >= 0)
        {
            VecT const* from = hidden + (b * T + src) * rowVecs;
            for (int64_t i = threadIdx.x; i < rowVecs; i += blockDim.x)
            {
                dst[i] = from[i];
            }
        }
        else
        {
            VecT const zero{};
            for (int64_t i = threadIdx.x; i < rowVecs; i += blockDim.x)
            {
                dst[i] = zero;
            }
        }
    }
}

template <typename VecT>
cudaError_t launchWrite(void const* hidden, int32_t const* order, int64_t const* counts,
    unsigned long long const* L, int64_t B, int64_t T, int64_t rowBytes, void* hidden_c, int64_t* mask_c,
    int64_t* index, int32_t* L_out32, cudaStream_t stream)
{
    int64_t const rowVecs = rowBytes / static_cast<int64_t>(sizeof(VecT));
    int64_t threads = alignUp(static_cast<size_t>(rowVecs < 1 ? 1 : rowVecs), 32);
    threads = threads > 256 ? 256 : threads;
    dim3 const grid(static_cast<unsigned>(T), static_cast<unsigned>(B < kMaxGridY ? B : kMaxGridY));
    td_write_rows<VecT><<<grid, static_cast<unsigned>(threads), 0, stream>>>(static_cast<VecT const*>(hidden),
        order, counts, L, B, T, rowVecs, static_cast<VecT*>(hidden_c), mask_c, index, L_out32);
    return cudaGetLastError();
}

bool aligned(void const* p, size_t a)
{
    return (reinterpret_cast<uintptr_t>(p) % a) == 0;
}

} // namespace

extern "C" size_t adapler_token_drop_workspace_size(int64_t B, int64_t T)
{
    if (B <= 0 || T <= 0)
    {
        return 256;
    }
    return alignUp(static_cast<size_t>(B * T) * sizeof(int32_t), 256) + alignUp(static_cast<size_t>(B) * sizeof(int64_t), 256);
}

extern "C" int adapler_token_drop_launch(int dtype, void const* hidden, float const* scores, int64_t const* mask,
    float const* threshold, int64_t threshold_len, int64_t B, int64_t T, int64_t D, void* hidden_c,
    int64_t* mask_c, int64_t* index, int64_t* L_out, int32_t* L_out32, void* workspace, cudaStream_t stream)
{
    if (L_out == nullptr || (dtype != ADAPLER_TD_FLOAT32 && dtype != ADAPLER_TD_FLOAT16) || B < 0 || T < 0 || D < 0)
    {
        return 1;
    }
    cudaError_t err = cudaMemsetAsync(L_out, 0, sizeof(int64_t), stream);
    if (err != cudaSuccess)
    {
        return static_cast<int>(err);
    }
    if (B == 0)
    {
        return L_out32 != nullptr ? static_cast<int>(cudaMemsetAsync(L_out32, 0, sizeof(int32_t), stream)) : 0;
    }
    if (T < 1 || T > INT32_MAX || (threshold_len != 1 && threshold_len != B) || workspace == nullptr
        || !aligned(workspace, 256))
    {
        return 1;
    }
    auto* order = static_cast<int32_t*>(workspace);
    auto* counts = reinterpret_cast<int64_t*>(
        static_cast<char*>(workspace) + alignUp(static_cast<size_t>(B * T) * sizeof(int32_t), 256));
    auto* L = reinterpret_cast<unsigned long long*>(L_out);

    td_scan_rows<<<static_cast<unsigned>(B), kScanBlock, 0, stream>>>(
        scores, mask, threshold, threshold_len, T, order, counts, L);
    err = cudaGetLastError();
    if (err != cudaSuccess)
    {
        return static_cast<int>(err);
    }

    int64_t const rowBytes = D * (dtype == ADAPLER_TD_FLOAT32 ? 4 : 2);
    if (rowBytes % 16 == 0 && aligned(hidden, 16) && aligned(hidden_c, 16))
    {
        err = launchWrite<uint4>(hidden, order, counts, L, B, T, rowBytes, hidden_c, mask_c, index, L_out32, stream);
    }
    else if (rowBytes % 4 == 0 && aligned(hidden, 4) && aligned(hidden_c, 4))
    {
        err = launchWrite<uint32_t>(hidden, order, counts, L, B, T, rowBytes, hidden_c, mask_c, index, L_out32, stream);
    }
    else
    {
        err = launchWrite<uint16_t>(hidden, order, counts, L, B, T, rowBytes, hidden_c, mask_c, index, L_out32, stream);
    }
    return static_cast<int>(err);
}

extern "C" char const* adapler_token_drop_version(void)
{
    return "adapler-token-drop-cuda 1";
}
