// ONNX Runtime custom-op library: adapler::TokenDrop v1 and adapler::ContributionDrop v1 (CPU EP).
//
// Spec: plugins/token_drop/README.md. Oracle: plugins/token_drop/reference.py.
//
//   keep[b,t] = (t == 0) || (mask[b,t] == 1 && scores[b,t] >= threshold[b])   (NaN -> false)
//   L         = max_b sum_t keep[b,t]  (>= 1)
//   kept tokens move to the front of each row in ascending order; padding slots get
//   hidden_c = 0, mask_c = 0, index = -1.
//
// Build (plugins/token_drop/build.py does this):
//   g++ -O2 -std=c++17 -shared -fPIC -I<ort headers> token_drop.cc -o libadapler_ops.so
// The library does not link to libonnxruntime: the API table arrives at load time through
// OrtApiBase, and requesting ORT_API_VERSION (21, Debian trixie's headers) keeps it working on
// newer runtimes (the C API is backward compatible).

#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT
#include "onnxruntime_lite_custom_op.h"

#include "compact.h"
#include "../../contribution_drop/ort/contribution_drop.h"
#include "../../contribution_drop/ort/packed_contribution_drop.h"

#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

using Ort::Custom::Tensor;

Ort::Status InvalidArgument(const std::string& msg) {
  return Ort::Status(("adapler::TokenDrop: " + msg).c_str(), ORT_INVALID_ARGUMENT);
}

std::string ShapeStr(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// One kernel, instantiated for float and Ort::Float16_t; the element type matters only for the
// type constraint ORT matches against and for sizeof(Elem).
template <typename Elem>
struct TokenDropKernel {
  TokenDropKernel(const OrtApi*, const OrtKernelInfo*) {}
  // plugin_namespace / plugin_version are for TensorRT's ONNX parser; ORT ignores them.

  // Returning Ort::Status (KernelComputeV2) turns bad inputs into a normal ORT error instead
  // of a C++ exception crossing the C ABI.
  Ort::Status Compute(const Tensor<Elem>& hidden, const Tensor<float>& scores,
                      const Tensor<int64_t>& mask, const Tensor<float>& threshold,
                      Tensor<Elem>& hidden_c, Tensor<int64_t>& mask_c, Tensor<int64_t>& index) {
    try {
      return Run(hidden, scores, mask, threshold, hidden_c, mask_c, index);
    } catch (const std::exception& e) {
      return Ort::Status(e);
    }
  }

 private:
  // Scratch buffers reused across calls (ORT runs one kernel instance per node; the session
  // may be called from several threads, hence the lock).
  std::mutex mu_;
  std::vector<int64_t> kept_pos_;  // [B, T]: kept positions of each row, front-packed
  std::vector<int64_t> kept_n_;    // [B]

  Ort::Status Run(const Tensor<Elem>& hidden, const Tensor<float>& scores,
                  const Tensor<int64_t>& mask, const Tensor<float>& threshold,
                  Tensor<Elem>& hidden_c, Tensor<int64_t>& mask_c, Tensor<int64_t>& index) {
    const auto& hs = hidden.Shape();
    if (hs.size() != 3) return InvalidArgument("hidden must be [B, T, D], got " + ShapeStr(hs));
    const int64_t B = hs[0], T = hs[1], D = hs[2];
    if (T < 1) return InvalidArgument("T must be >= 1 (position 0 is [CLS]), got " + ShapeStr(hs));
    const std::vector<int64_t> bt{B, T};
    if (scores.Shape() != bt)
      return InvalidArgument("scores must be [B, T] = " + ShapeStr(bt) + ", got " + ShapeStr(scores.Shape()));
    if (mask.Shape() != bt)
      return InvalidArgument("mask must be [B, T] = " + ShapeStr(bt) + ", got " + ShapeStr(mask.Shape()));
    const auto& ts = threshold.Shape();
    if (ts.size() != 1 || (ts[0] != B && ts[0] != 1))
      return InvalidArgument("threshold must be [B] = [" + std::to_string(B) + "] or [1], got " + ShapeStr(ts));
    const bool broadcast = ts[0] == 1;

    const float* s = scores.Data();
    const int64_t* m = mask.Data();
    const float* thr = threshold.Data();

    std::lock_guard<std::mutex> lock(mu_);
    // L is needed before outputs can be allocated: this is what makes the shape data-dependent.
    const int64_t L = adapler::KeepPositions(s, m, thr, broadcast, B, T, kept_pos_, kept_n_);
    Elem* out_h = hidden_c.Allocate({B, L, D});
    int64_t* out_m = mask_c.Allocate({B, L});
    int64_t* out_i = index.Allocate({B, L});
    if (B == 0) return Ort::Status{nullptr};
    // The body never does arithmetic on hidden values (it only moves rows), hence bytes.
    adapler::CompactRows(hidden.Data(), out_h, out_m, out_i, B, T, L, static_cast<size_t>(D) * sizeof(Elem),
                         kept_pos_, kept_n_);
    return Ort::Status{nullptr};
  }
};

// Static storage: ORT keeps raw pointers to the domain and the ops for as long as any session
// created with the options lives, i.e. for the library's lifetime.
std::once_flag g_once;
std::unique_ptr<Ort::Custom::OrtLiteCustomOp> g_op_f32;
std::unique_ptr<Ort::Custom::OrtLiteCustomOp> g_op_f16;
std::unique_ptr<Ort::Custom::OrtLiteCustomOp> g_op_contribution;
std::unique_ptr<Ort::Custom::OrtLiteCustomOp> g_op_contribution_i32;
std::unique_ptr<Ort::Custom::OrtLiteCustomOp> g_op_packed_contribution;
std::unique_ptr<Ort::CustomOpDomain> g_domain;

}  // namespace

extern "C" {

// Entry point looked up by SessionOptions::register_custom_ops_library.
__attribute__((visibility("default"))) OrtStatus* ORT_API_CALL RegisterCustomOps(
    OrtSessionOptions* options, const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    // Runtime older than the headers (1.21): report it through the oldest API table.
    const OrtApi* v1 = api_base->GetApi(1);
    return v1->CreateStatus(ORT_FAIL, "libadapler_ops.so needs ONNX Runtime >= 1.21 (ORT_API_VERSION 21)");
  }
  Ort::InitApi(api);
  try {
    std::call_once(g_once, [] {
      // Two kernels under one name: ORT merges same-named ops of a domain into one schema whose
      // type constraint is the union, and picks the kernel by the hidden/hidden_c element type.
      g_op_f32.reset(Ort::Custom::CreateLiteCustomOp<TokenDropKernel<float>>("TokenDrop", "CPUExecutionProvider"));
      g_op_f16.reset(Ort::Custom::CreateLiteCustomOp<TokenDropKernel<Ort::Float16_t>>("TokenDrop", "CPUExecutionProvider"));
      g_domain = std::make_unique<Ort::CustomOpDomain>("adapler");
      g_domain->Add(g_op_f32.get());
      g_domain->Add(g_op_f16.get());
      // The fused AdapLeR selection (plugins/contribution_drop): CP output layer, masked softmax,
      // eta / n threshold and TokenDrop's compaction in one node.
      // Again two kernels under one name, picked by the mask's element type (int64 or int32).
      g_op_contribution.reset(Ort::Custom::CreateLiteCustomOp<adapler::ContributionDropKernel<int64_t>>(
          "ContributionDrop", "CPUExecutionProvider"));
      g_op_contribution_i32.reset(Ort::Custom::CreateLiteCustomOp<adapler::ContributionDropKernel<int32_t>>(
          "ContributionDrop", "CPUExecutionProvider"));
      g_domain->Add(g_op_contribution.get());
      g_domain->Add(g_op_contribution_i32.get());
      // The same selection on a packed batch [N, D] with row offsets (model.ort.packed.onnx).
      g_op_packed_contribution.reset(Ort::Custom::CreateLiteCustomOp<adapler::PackedContributionDropKernel>(
          "PackedContributionDrop", "CPUExecutionProvider"));
      g_domain->Add(g_op_packed_contribution.get());
    });
    Ort::UnownedSessionOptions session_options(options);
    session_options.Add(*g_domain);
  } catch (const std::exception& e) {
    return api->CreateStatus(ORT_FAIL, e.what());
  }
  return nullptr;
}

}  // extern "C"
