// TokenDrop's keep rule and compaction, shared by every ONNX Runtime kernel that drops tokens
// (adapler::TokenDrop, adapler::ContributionDrop), so the compaction semantics are written once.
// Spec: plugins/token_drop/README.md.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace adapler {

// Pass 1: the kept positions of each row, front-packed in kept_pos [B, T], their count in
// kept_n [B]; returns L = max_b kept_n[b] (>= 1: position 0 is always kept).
//   keep[b,t] = (t == 0) || (mask[b,t] == 1 && scores[b,t] >= threshold[b])   (NaN -> false)
// `Mask` is the mask's element type: int64 (TokenDrop, ContributionDrop) or int32 (ContributionDrop
// feeding ORT's fused Attention, which reads int32 masks).
template <typename Mask>
inline int64_t KeepPositions(const float* scores, const Mask* mask, const float* threshold,
                             bool broadcast, int64_t B, int64_t T, std::vector<int64_t>& kept_pos,
                             std::vector<int64_t>& kept_n) {
  kept_pos.resize(static_cast<size_t>(B * T));
  kept_n.resize(static_cast<size_t>(B));
  int64_t L = 1;
  for (int64_t b = 0; b < B; ++b) {
    const float th = threshold[broadcast ? 0 : b];
    const float* sb = scores + b * T;
    const Mask* mb = mask + b * T;
    int64_t* pos = kept_pos.data() + b * T;
    int64_t n = 0;
    pos[n++] = 0;  // [CLS] rule
    for (int64_t t = 1; t < T; ++t) {
      // `>=` is false for NaN, so a NaN score drops the token, as in the reference.
      if (mb[t] == 1 && sb[t] >= th) pos[n++] = t;
    }
    kept_n[b] = n;
    if (n > L) L = n;
  }
  return L;
}

// Pass 2: copy kept rows of `in_h` [B, T, D] (row_bytes = D * sizeof(element)) to the front of
// `out_h` [B, L, D]; padding slots get zero bits, mask 0, index -1. Consecutive kept positions
// are contiguous in input and output, so each run of them is one memcpy.
template <typename Mask>
inline void CompactRows(const void* in_h, void* out_h, Mask* out_m, int64_t* out_i, int64_t B,
                        int64_t T, int64_t L, size_t row_bytes,
                        const std::vector<int64_t>& kept_pos, const std::vector<int64_t>& kept_n) {
  const auto* src = static_cast<const unsigned char*>(in_h);
  auto* dst = static_cast<unsigned char*>(out_h);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = kept_n[b];
    const int64_t* pos = kept_pos.data() + b * T;
    const unsigned char* src_b = src + static_cast<size_t>(b * T) * row_bytes;
    unsigned char* dst_b = dst + static_cast<size_t>(b * L) * row_bytes;
    for (int64_t i = 0; i < n;) {
      int64_t j = i + 1;
      while (j < n && pos[j] == pos[j - 1] + 1) ++j;
      std::memcpy(dst_b + static_cast<size_t>(i) * row_bytes,
                  src_b + static_cast<size_t>(pos[i]) * row_bytes,
                  static_cast<size_t>(j - i) * row_bytes);
      i = j;
    }
    // Zero bits are 0.0 in both float32 and float16.
    if (n < L) std::memset(dst_b + static_cast<size_t>(n) * row_bytes, 0, static_cast<size_t>(L - n) * row_bytes);
    Mask* mb = out_m + b * L;
    int64_t* ib = out_i + b * L;
    for (int64_t i = 0; i < n; ++i) {
      mb[i] = 1;
      ib[i] = pos[i];
    }
    for (int64_t i = n; i < L; ++i) {
      mb[i] = 0;
      ib[i] = -1;
    }
  }
}

}  // namespace adapler
