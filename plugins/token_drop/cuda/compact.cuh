/*
 * TokenDrop's keep rule and compaction on the GPU, shared by every CUDA kernel that drops tokens
 * (adapler::TokenDrop, adapler::ContributionDrop), so the compaction is written once; the CPU twin is
 * plugins/token_drop/ort/compact.h. Spec: plugins/token_drop/README.md.
 *
 *   1. ScanRows  (grid B, one block per row): keep flags -> per-row exclusive prefix with warp ballots,
 *      writes the stable order of kept positions to order[b, 0:kept_b], counts[b] = kept_b, and
 *      atomicMax(L, kept_b).
 *   2. WriteRows (grid T x B, one block per output slot): reads L from device memory, exits for
 *      slot >= L, otherwise writes index / mask_c and copies (or zeroes) one hidden row. Rows are copied
 *      as raw bits (uint4 / uint32 / uint16 vectors), so fp32 and fp16 are exact and the padding zero is
 *      +0.0 in both.
 *
 * `Mask` is the element type of mask and mask_c: int64 (TokenDrop) or int32 (ContributionDrop can feed
 * fused attention that reads int32 masks). No host synchronisation: L never leaves the device.
 */
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

namespace adapler
{
namespace compact
{
namespace // internal linkage: each library that includes this keeps its own copy, no symbol is exported
{

constexpr int kScanBlock = 256;            // threads per row in ScanRows (multiple of 32)
constexpr int kWarps = kScanBlock / 32;
constexpr int64_t kMaxGridY = 65535;       // CUDA limit on gridDim.y

__host__ __device__ inline size_t alignUp(size_t x, size_t a)
{
    return (x + a - 1) / a * a;
}

inline bool aligned(void const* p, size_t a)
{
    return (reinterpret_cast<uintptr_t>(p) % a) == 0;
}

/* Bytes of scratch for [B, T]: order int32[B*T] then counts int64[B], each 256-byte aligned. */
inline size_t workspaceSize(int64_t B, int64_t T)
{
    if (B <= 0 || T <= 0)
    {
        return 256;
    }
    return alignUp(static_cast<size_t>(B * T) * sizeof(int32_t), 256) + alignUp(static_cast<size_t>(B) * sizeof(int64_t), 256);
}

template <typename Mask>
__global__ void ScanRows(float const* __restrict__ scores, Mask const* __restrict__ mask,
    float const* __restrict__ threshold, int64_t threshold_len, int64_t T, int32_t* __restrict__ order,
    int64_t* __restrict__ counts, unsigned long long* __restrict__ L_out)
{
    __shared__ int warpCounts[kWarps];
    int64_t const b = blockIdx.x;
    float const thr = threshold[threshold_len == 1 ? 0 : b];
    float const* s = scores + b * T;
    Mask const* m = mask + b * T;
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

template <typename VecT, typename Mask>
__global__ void WriteRows(VecT const* __restrict__ hidden, int32_t const* __restrict__ order,
    int64_t const* __restrict__ counts, unsigned long long const* __restrict__ L_in, int64_t B, int64_t T,
    int64_t rowVecs, VecT* __restrict__ hidden_c, Mask* __restrict__ mask_c, int64_t* __restrict__ index,
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
            mask_c[outRow] = static_cast<Mask>(src >= 0 ? 1 : 0);
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

template <typename VecT, typename Mask>
cudaError_t launchWrite(void const* hidden, int32_t const* order, int64_t const* counts,
    unsigned long long const* L, int64_t B, int64_t T, int64_t rowBytes, void* hidden_c, Mask* mask_c,
    int64_t* index, int32_t* L_out32, cudaStream_t stream)
{
    int64_t const rowVecs = rowBytes / static_cast<int64_t>(sizeof(VecT));
    int64_t threads = alignUp(static_cast<size_t>(rowVecs < 1 ? 1 : rowVecs), 32);
    threads = threads > 256 ? 256 : threads;
    dim3 const grid(static_cast<unsigned>(T), static_cast<unsigned>(B < kMaxGridY ? B : kMaxGridY));
    WriteRows<VecT, Mask><<<grid, static_cast<unsigned>(threads), 0, stream>>>(static_cast<VecT const*>(hidden),
        order, counts, L, B, T, rowVecs, static_cast<VecT*>(hidden_c), mask_c, index, L_out32);
    return cudaGetLastError();
}

/*
 * The start of every launcher: L = 0 on the stream (the scan atomically maxes into it), and for an empty
 * batch the int32 copy too. The caller returns the result when it is an error or B == 0.
 */
inline cudaError_t resetLength(int64_t* L_out, int32_t* L_out32, int64_t B, cudaStream_t stream)
{
    cudaError_t const err = cudaMemsetAsync(L_out, 0, sizeof(int64_t), stream);
    if (err != cudaSuccess || B != 0 || L_out32 == nullptr)
    {
        return err;
    }
    return cudaMemsetAsync(L_out32, 0, sizeof(int32_t), stream);
}

/*
 * The whole compaction for B >= 1, T in [1, INT32_MAX]: keep rule on (scores, mask, threshold), then the
 * outputs. `L_out` must already be zero on the stream (resetLength).
 * `workspace` holds workspaceSize(B, T) bytes, 256-byte aligned. Returns the first CUDA error.
 */
template <typename Mask>
cudaError_t compactRows(void const* hidden, size_t elementBytes, float const* scores, Mask const* mask,
    float const* threshold, int64_t threshold_len, int64_t B, int64_t T, int64_t D, void* hidden_c, Mask* mask_c,
    int64_t* index, int64_t* L_out, int32_t* L_out32, void* workspace, cudaStream_t stream)
{
    auto* order = static_cast<int32_t*>(workspace);
    auto* counts = reinterpret_cast<int64_t*>(
        static_cast<char*>(workspace) + alignUp(static_cast<size_t>(B * T) * sizeof(int32_t), 256));
    auto* L = reinterpret_cast<unsigned long long*>(L_out);

    ScanRows<Mask><<<static_cast<unsigned>(B), kScanBlock, 0, stream>>>(
        scores, mask, threshold, threshold_len, T, order, counts, L);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess)
    {
        return err;
    }
    int64_t const rowBytes = D * static_cast<int64_t>(elementBytes);
    if (rowBytes % 16 == 0 && aligned(hidden, 16) && aligned(hidden_c, 16))
    {
        return launchWrite<uint4, Mask>(hidden, order, counts, L, B, T, rowBytes, hidden_c, mask_c, index, L_out32, stream);
    }
    if (rowBytes % 4 == 0 && aligned(hidden, 4) && aligned(hidden_c, 4))
    {
        return launchWrite<uint32_t, Mask>(hidden, order, counts, L, B, T, rowBytes, hidden_c, mask_c, index, L_out32,
            stream);
    }
    return launchWrite<uint16_t, Mask>(hidden, order, counts, L, B, T, rowBytes, hidden_c, mask_c, index, L_out32, stream);
}

} // namespace
} // namespace compact
} // namespace adapler
