/*
 * adapler::TokenDrop v1 -- CUDA compaction kernel, C-callable (ctypes, TensorRT plugin).
 *
 * Semantics (plugins/token_drop/README.md, docs/deploy.md section 1.2):
 *   keep[b,t] = (t == 0) || (mask[b,t] == 1 && scores[b,t] >= threshold[b])   (NaN -> false)
 *   kept_b    = sum_t keep[b,t]            (>= 1: [CLS] is always kept)
 *   L         = max_b kept_b
 *   hidden_c[b,i] = hidden[b, idx_b[i]] (i < kept_b) else 0; mask_c = 1 / 0; index = idx_b[i] / -1
 *
 * Output layout is dense row-major with the *actual* L as the middle extent:
 *   hidden_c : [B, L, D]  (element (b,i,d) at (b*L + i)*D + d)
 *   mask_c   : [B, L] int64,  index : [B, L] int64
 * Callers that cannot know L in advance (TensorRT with a size tensor, ctypes) allocate the
 * upper bound [B, T, D] / [B, T] and view the first B*L*D / B*L elements afterwards.
 *
 * No host synchronisation happens inside the launcher: L is computed on the device
 * (atomicMax into *L_out) and the second kernel reads it from device memory.
 */
#ifndef ADAPLER_TOKEN_DROP_KERNEL_H
#define ADAPLER_TOKEN_DROP_KERNEL_H

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define ADAPLER_TD_API __declspec(dllexport)
#else
#define ADAPLER_TD_API __attribute__((visibility("default")))
#endif

/* dtype codes for `hidden` / `hidden_c` */
enum
{
    ADAPLER_TD_FLOAT32 = 0,
    ADAPLER_TD_FLOAT16 = 1
};

/* Bytes of scratch device memory the launcher needs for a [B, T] problem (256-byte aligned
 * sub-buffers: per-row order int32[B*T], per-row counts int64[B]). */
ADAPLER_TD_API size_t adapler_token_drop_workspace_size(int64_t B, int64_t T);

/*
 * Enqueue TokenDrop on `stream`. All pointers are device pointers.
 *
 *   dtype        ADAPLER_TD_FLOAT32 or ADAPLER_TD_FLOAT16 (element type of hidden / hidden_c)
 *   hidden       [B, T, D]
 *   scores       float32 [B, T]
 *   mask         int64   [B, T]
 *   threshold    float32 [threshold_len], threshold_len == 1 (broadcast) or == B
 *   hidden_c     capacity >= B*T*D elements; first B*L*D written
 *   mask_c       capacity >= B*T int64;      first B*L written
 *   index        capacity >= B*T int64;      first B*L written
 *   L_out        int64 scalar, receives L (e.g. an INT64 TensorRT size tensor); must not be NULL
 *   L_out32      optional int32 scalar copy of L (INT32 size tensors); may be NULL
 *   workspace    >= adapler_token_drop_workspace_size(B, T) bytes, 256-byte aligned
 *
 * Returns cudaSuccess (0) or the cudaError_t of the first failing call / 1 for bad arguments.
 * B == 0 writes L = 0 and nothing else. T must be >= 1 when B > 0.
 */
ADAPLER_TD_API int adapler_token_drop_launch(int dtype, void const* hidden, float const* scores,
    int64_t const* mask, float const* threshold, int64_t threshold_len, int64_t B, int64_t T, int64_t D,
    void* hidden_c, int64_t* mask_c, int64_t* index, int64_t* L_out, int32_t* L_out32, void* workspace,
    cudaStream_t stream);

/* Library version string, e.g. "adapler-token-drop-cuda 1". */
ADAPLER_TD_API char const* adapler_token_drop_version(void);

#ifdef __cplusplus
}
#endif

#endif /* ADAPLER_TOKEN_DROP_KERNEL_H */
