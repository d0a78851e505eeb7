// ONNX Runtime CPU kernel of adapler::ContributionDrop v1 (spec: plugins/contribution_drop/README.md,
// oracle: plugins/contribution_drop/reference.py). Included by the library's registration unit
// (plugins/token_drop/ort/token_drop.cc), which builds both ops into libadapler_ops.so.
//
//   z[b,t]      = sum_h cp_hidden[b,t,h] * w2[h]                 (the CP's output layer, no bias)
//   scores[b,:] = softmax of z over the alive tokens of row b    (mask == 1), 0 elsewhere
//   threshold_b = eta / sum_t mask[b,t]
//   outputs     = TokenDrop(hidden, scores, mask, threshold)     (compact.h: the same code path)
//   kept[b, 0]  = kept_b                                        (optional fourth output, when the node has it)
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "../../token_drop/ort/compact.h"

namespace adapler {

// `Mask` is the element type of mask and mask_c: int64 (TokenDrop's), or int32, which
// lets model.ort.onnx feed mask_c straight to ORT's fused Attention (int32 masks) without a Cast per layer.
template <typename Mask>
struct ContributionDropKernel {
  ContributionDropKernel(const OrtApi*, const OrtKernelInfo*) {}

  Ort::Status Compute(const Ort::Custom::Tensor<float>& hidden, const Ort::Custom::Tensor<float>& cp_hidden,
                      const Ort::Custom::Tensor<float>& w2, const Ort::Custom::Tensor<Mask>& mask,
                      const Ort::Custom::Tensor<float>& eta, Ort::Custom::Tensor<float>& hidden_c,
                      Ort::Custom::Tensor<Mask>& mask_c, Ort::Custom::Tensor<int64_t>& index,
                      std::optional<Ort::Custom::Tensor<int64_t>*> kept) {
    try {
      return Run(hidden, cp_hidden, w2, mask, eta, hidden_c, mask_c, index, kept);
    } catch (const std::exception& e) {
      return Ort::Status(e);
    }
  }

 private:
  std::mutex mu_;
  std::vector<float> scores_;  // [B, T]
  std::vector<float> thr_;     // [B]
  std::vector<int64_t> kept_pos_, kept_n_;

  static Ort::Status Invalid(const std::string& msg) {
    return Ort::Status(("adapler::ContributionDrop: " + msg).c_str(), ORT_INVALID_ARGUMENT);
  }
  static std::string Str(const std::vector<int64_t>& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
  }

  Ort::Status Run(const Ort::Custom::Tensor<float>& hidden, const Ort::Custom::Tensor<float>& cp_hidden,
                  const Ort::Custom::Tensor<float>& w2, const Ort::Custom::Tensor<Mask>& mask,
                  const Ort::Custom::Tensor<float>& eta, Ort::Custom::Tensor<float>& hidden_c,
                  Ort::Custom::Tensor<Mask>& mask_c, Ort::Custom::Tensor<int64_t>& index,
                  std::optional<Ort::Custom::Tensor<int64_t>*> kept) {
    const auto& hs = hidden.Shape();
    if (hs.size() != 3) return Invalid("hidden must be [B, T, D], got " + Str(hs));
    const int64_t B = hs[0], T = hs[1], D = hs[2];
    if (T < 1) return Invalid("T must be >= 1 (position 0 is [CLS]), got " + Str(hs));
    const auto& cs = cp_hidden.Shape();
    if (cs.size() != 3 || cs[0] != B || cs[1] != T)
      return Invalid("cp_hidden must be [B, T, H] with [B, T] = " + Str({B, T}) + ", got " + Str(cs));
    const int64_t H = cs[2];
    if (w2.Shape() != std::vector<int64_t>{H}) return Invalid("w2 must be [H] = " + Str({H}) + ", got " + Str(w2.Shape()));
    if (mask.Shape() != std::vector<int64_t>{B, T})
      return Invalid("mask must be [B, T] = " + Str({B, T}) + ", got " + Str(mask.Shape()));
    if (eta.Shape() != std::vector<int64_t>{1}) return Invalid("eta must be [1], got " + Str(eta.Shape()));

    const float* c = cp_hidden.Data();
    const float* w = w2.Data();
    const Mask* m = mask.Data();
    const float e = eta.Data()[0];

    std::lock_guard<std::mutex> lock(mu_);
    scores_.assign(static_cast<size_t>(B * T), 0.0f);
    thr_.resize(static_cast<size_t>(B));
    const float neg_inf = -std::numeric_limits<float>::infinity();
    for (int64_t b = 0; b < B; ++b) {
      float* s = scores_.data() + b * T;
      const Mask* mb = m + b * T;
      // z for alive tokens (others stay -inf), then a max-subtracted softmax over them, then the
      // renormalisation the torch model applies (p / (sum p + 1e-15)), in float32 like torch.
      float zmax = neg_inf;
      int64_t n = 0;
      for (int64_t t = 0; t < T; ++t) {
        if (mb[t] != 1) { s[t] = neg_inf; continue; }
        const float* ct = c + (b * T + t) * H;
        float z = 0.0f;
        for (int64_t h = 0; h < H; ++h) z += ct[h] * w[h];
        s[t] = z;
        zmax = z > zmax ? z : zmax;
        ++n;
      }
      float sum = 0.0f;
      for (int64_t t = 0; t < T; ++t) {
        s[t] = mb[t] == 1 ? std::exp(s[t] - zmax) : 0.0f;
        sum += s[t];
      }
      float psum = 0.0f;
      for (int64_t t = 0; t < T; ++t) {
        s[t] = s[t] / sum;
        psum += s[t];
      }
      for (int64_t t = 0; t < T; ++t) s[t] = s[t] / (psum + 1e-15f);
      thr_[b] = e / static_cast<float>(n);  // n == 0: +inf, only [CLS] survives (as in torch)
    }
    const int64_t L = KeepPositions(scores_.data(), m, thr_.data(), false, B, T, kept_pos_, kept_n_);
    float* out_h = hidden_c.Allocate({B, L, D});
    Mask* out_m = mask_c.Allocate({B, L});
    int64_t* out_i = index.Allocate({B, L});
    if (kept.has_value() && *kept != nullptr) {
      // The layer's kept lengths, so the deploy graph needs no ReduceSum over mask_c per layer.
      int64_t* out_k = (*kept)->Allocate({B, 1});
      for (int64_t b = 0; b < B; ++b) out_k[b] = kept_n_[static_cast<size_t>(b)];
    }
    if (B == 0) return Ort::Status{nullptr};
    CompactRows(hidden.Data(), out_h, out_m, out_i, B, T, L, static_cast<size_t>(D) * sizeof(float), kept_pos_,
                kept_n_);
    return Ort::Status{nullptr};
  }
};

}  // namespace adapler
