// ONNX Runtime CPU kernel of adapler::PackedContributionDrop v1 (spec: plugins/contribution_drop/README.md,
// oracle: plugins/contribution_drop/packed_reference.py). Included by the library's registration unit
// (plugins/token_drop/ort/token_drop.cc).
//
// ContributionDrop on a packed batch: rows are hidden[offsets[b]:offsets[b+1]] (every token alive).
//   scores[row] = softmax(cp_hidden[row] . w2), renormalised as ContributionDrop does
//   keep t      = first token of the row, or scores[t] >= eta / n_row
// Outputs: the kept tokens packed (hidden_c [M, D]), their row offsets [B+1], row lengths (int32, the
// 1-D mask_index of com.microsoft.Attention) and the two indices of the padded view the
// attention runs on: pad_index [B, L] (packed row of slot (b, i); padding -> the row's first token)
// and unpad_index [M] (slot b * L + i of each kept token).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

namespace adapler {

struct PackedContributionDropKernel {
  PackedContributionDropKernel(const OrtApi*, const OrtKernelInfo*) {}

  Ort::Status Compute(const Ort::Custom::Tensor<float>& hidden, const Ort::Custom::Tensor<float>& cp_hidden,
                      const Ort::Custom::Tensor<float>& w2, const Ort::Custom::Tensor<int64_t>& offsets,
                      const Ort::Custom::Tensor<float>& eta, Ort::Custom::Tensor<float>& hidden_c,
                      Ort::Custom::Tensor<int64_t>& offsets_c, Ort::Custom::Tensor<int32_t>& lengths_c,
                      Ort::Custom::Tensor<int64_t>& pad_index, Ort::Custom::Tensor<int64_t>& unpad_index) {
    try {
      return Run(hidden, cp_hidden, w2, offsets, eta, hidden_c, offsets_c, lengths_c, pad_index, unpad_index);
    } catch (const std::exception& e) {
      return Ort::Status(e);
    }
  }

 private:
  std::mutex mu_;
  std::vector<float> scores_;       // [N]
  std::vector<int64_t> kept_;       // [N] packed rows kept, in order
  std::vector<int64_t> kept_n_;     // [B]

  static Ort::Status Invalid(const std::string& msg) {
    return Ort::Status(("adapler::PackedContributionDrop: " + msg).c_str(), ORT_INVALID_ARGUMENT);
  }
  static std::string Str(const std::vector<int64_t>& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
  }

  Ort::Status Run(const Ort::Custom::Tensor<float>& hidden, const Ort::Custom::Tensor<float>& cp_hidden,
                  const Ort::Custom::Tensor<float>& w2, const Ort::Custom::Tensor<int64_t>& offsets,
                  const Ort::Custom::Tensor<float>& eta, Ort::Custom::Tensor<float>& hidden_c,
                  Ort::Custom::Tensor<int64_t>& offsets_c, Ort::Custom::Tensor<int32_t>& lengths_c,
                  Ort::Custom::Tensor<int64_t>& pad_index, Ort::Custom::Tensor<int64_t>& unpad_index) {
    const auto& hs = hidden.Shape();
    if (hs.size() != 2) return Invalid("hidden must be [N, D], got " + Str(hs));
    const int64_t N = hs[0], D = hs[1];
    const auto& cs = cp_hidden.Shape();
    if (cs.size() != 2 || cs[0] != N) return Invalid("cp_hidden must be [N, H] with N = " + std::to_string(N) + ", got " + Str(cs));
    const int64_t H = cs[1];
    if (w2.Shape() != std::vector<int64_t>{H}) return Invalid("w2 must be [H] = " + Str({H}) + ", got " + Str(w2.Shape()));
    const auto& os = offsets.Shape();
    if (os.size() != 1 || os[0] < 2) return Invalid("offsets must be [B + 1] with B >= 1, got " + Str(os));
    if (eta.Shape() != std::vector<int64_t>{1}) return Invalid("eta must be [1], got " + Str(eta.Shape()));
    const int64_t B = os[0] - 1;
    const int64_t* off = offsets.Data();
    if (off[0] != 0 || off[B] != N) return Invalid("offsets must run from 0 to N = " + std::to_string(N));
    for (int64_t b = 0; b < B; ++b)
      if (off[b + 1] <= off[b])
        return Invalid("row " + std::to_string(b) + " is empty or offsets fall; every row keeps its [CLS]");

    const float* c = cp_hidden.Data();
    const float* w = w2.Data();
    const float e = eta.Data()[0];

    std::lock_guard<std::mutex> lock(mu_);
    scores_.resize(static_cast<size_t>(N));
    kept_.resize(static_cast<size_t>(N));
    kept_n_.resize(static_cast<size_t>(B));
    int64_t M = 0, L = 1;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t r0 = off[b], n = off[b + 1] - off[b];
      float* s = scores_.data() + r0;
      // The same float32 arithmetic, in the same order, as ContributionDrop's kernel on an alive row.
      float zmax = -std::numeric_limits<float>::infinity();
      for (int64_t t = 0; t < n; ++t) {
        const float* ct = c + (r0 + t) * H;
        float z = 0.0f;
        for (int64_t h = 0; h < H; ++h) z += ct[h] * w[h];
        s[t] = z;
        zmax = z > zmax ? z : zmax;
      }
      float sum = 0.0f;
      for (int64_t t = 0; t < n; ++t) {
        s[t] = std::exp(s[t] - zmax);
        sum += s[t];
      }
      float psum = 0.0f;
      for (int64_t t = 0; t < n; ++t) {
        s[t] = s[t] / sum;
        psum += s[t];
      }
      const float th = e / static_cast<float>(n);
      const int64_t m0 = M;
      kept_[M++] = r0;  // [CLS] rule
      for (int64_t t = 1; t < n; ++t)
        if (s[t] / (psum + 1e-15f) >= th) kept_[M++] = r0 + t;  // NaN compares false: dropped
      kept_n_[b] = M - m0;
      if (kept_n_[b] > L) L = kept_n_[b];
    }

    float* out_h = hidden_c.Allocate({M, D});
    int64_t* out_off = offsets_c.Allocate({B + 1});
    int32_t* out_len = lengths_c.Allocate({B});
    int64_t* out_pad = pad_index.Allocate({B, L});
    int64_t* out_unpad = unpad_index.Allocate({M});
    const float* in_h = hidden.Data();
    const size_t row_bytes = static_cast<size_t>(D) * sizeof(float);
    for (int64_t i = 0; i < M;) {  // runs of consecutive kept rows are one memcpy
      int64_t j = i + 1;
      while (j < M && kept_[j] == kept_[j - 1] + 1) ++j;
      std::memcpy(out_h + i * D, in_h + kept_[i] * D, static_cast<size_t>(j - i) * row_bytes);
      i = j;
    }
    out_off[0] = 0;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t start = out_off[b], n = kept_n_[b];
      out_off[b + 1] = start + n;
      out_len[b] = static_cast<int32_t>(n);
      int64_t* pb = out_pad + b * L;
      for (int64_t i = 0; i < L; ++i) pb[i] = i < n ? start + i : start;
      for (int64_t i = 0; i < n; ++i) out_unpad[start + i] = b * L + i;
    }
    return Ort::Status{nullptr};
  }
};

}  // namespace adapler
