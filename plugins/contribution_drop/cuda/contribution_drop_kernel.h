/*
 * adapler::ContributionDrop v1 -- CUDA kernel, C-callable (ctypes, a TensorRT plugin).
 *
 * Semantics (plugins/contribution_drop/README.md):
 *   z[b,t]       = sum_h cp_hidden[b,t,h] * w2[h]                     (float32 accumulation)
 *   scores[b,t]  = softmax of z over the alive tokens of row b (mask == 1), 0 elsewhere
 *   threshold[b] = eta / n_alive(b)                                   (+inf when n_alive(b) == 0)
 *   (hidden_c, mask_c, index) = TokenDrop(hidden, scores, mask, threshold)
 *
 * The compaction is TokenDrop's CUDA code (plugins/token_drop/cuda/compact.cuh); the outputs have
 * TokenDrop's dense layout with the actual L as middle extent, written into upper-bound buffers:
 *   hidden_c : [B, L, D] (capacity B*T*D), mask_c : [B, L] of the mask's type, index : [B, L] int64.
 * No host synchronisation: L stays on the device (L_out; L_out32 optional).
 */
#ifndef ADAPLER_CONTRIBUTION_DROP_KERNEL_H
#define ADAPLER_CONTRIBUTION_DROP_KERNEL_H

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define ADAPLER_CD_API __declspec(dllexport)
#else
#define ADAPLER_CD_API __attribute__((visibility("default")))
#endif

/* element type of hidden, cp_hidden and hidden_c */
enum
{
    ADAPLER_CD_FLOAT32 = 0,
    ADAPLER_CD_FLOAT16 = 1
};

/* element type of mask and mask_c */
enum
{
    ADAPLER_CD_MASK_INT64 = 0,
    ADAPLER_CD_MASK_INT32 = 1
};

/* Bytes of scratch device memory for a [B, T] problem: scores float32[B*T], thresholds float32[B],
 * then TokenDrop's compaction scratch (order int32[B*T], counts int64[B]); 256-byte aligned parts. */
ADAPLER_CD_API size_t adapler_contribution_drop_workspace_size(int64_t B, int64_t T);

/*
 * Enqueue ContributionDrop on `stream`. All pointers are device pointers.
 *
 *   dtype      ADAPLER_CD_FLOAT32 or ADAPLER_CD_FLOAT16 (hidden, cp_hidden, hidden_c)
 *   mask_type  ADAPLER_CD_MASK_INT64 or ADAPLER_CD_MASK_INT32 (mask, mask_c)
 *   hidden     [B, T, D];  cp_hidden [B, T, H];  w2 float32 [H];  mask [B, T];  eta float32 [1]
 *   hidden_c   capacity >= B*T*D elements; mask_c, index capacity >= B*T; first B*L written
 *   L_out      int64 scalar, receives L; must not be NULL;  L_out32 optional int32 copy (may be NULL)
 *   workspace  >= adapler_contribution_drop_workspace_size(B, T) bytes, 256-byte aligned
 *
 * Returns cudaSuccess (0), the cudaError_t of the first failing call, or 1 for bad arguments.
 * B == 0 writes L = 0 and nothing else. T must be >= 1 and H >= 1 when B > 0.
 */
ADAPLER_CD_API int adapler_contribution_drop_launch(int dtype, int mask_type, void const* hidden,
    void const* cp_hidden, float const* w2, void const* mask, float const* eta, int64_t B, int64_t T, int64_t D,
    int64_t H, void* hidden_c, void* mask_c, int64_t* index, int64_t* L_out, int32_t* L_out32, void* workspace,
    cudaStream_t stream);

/* Library version string, e.g. "adapler-contribution-drop-cuda 1". */
ADAPLER_CD_API char const* adapler_contribution_drop_version(void);

#ifdef __cplusplus
}
#endif

#endif /* ADAPLER_CONTRIBUTION_DROP_KERNEL_H */
