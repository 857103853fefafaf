// SPDX-License-Identifier: Apache-2.0
#include "kernels/rms_norm.h"

#include <cmath>
#include <string>

#include "kernels/dispatch.h"
#include "runtime/tensor_access.h"

namespace tidal::kernels {

namespace {

void check_norm(const char* op, TensorView out, TensorView in, TensorView weight) {
  TIDAL_CHECK(in.rank == 2 && weight.rank == 1 && same_shape(out, in),
              std::string(op) + ": out and in must be [num_tokens, hidden], weight [hidden]");
  TIDAL_CHECK(in.size(1) == weight.size(0), std::string(op) + ": weight must be [hidden]");
  TIDAL_CHECK(out.dtype == in.dtype && weight.dtype == in.dtype,
              std::string(op) + ": one dtype for every view");
  TIDAL_CHECK(out.is_contiguous() && in.stride[1] == 1 && weight.is_contiguous(),
              std::string(op) + ": rows must be dense");
}

// Normalises row r of `in` into `out` (HF LlamaRMSNorm: x * rsqrt(mean(x^2) + eps), rounded to
// the dtype, then * weight).
void norm_row(TensorView out, TensorView in, TensorView weight, float eps, int64_t r) {
  const int64_t hidden = in.size(1);
  double sum_sq = 0.0;
  for (int64_t i = 0; i < hidden; ++i) {
    const double x = get_f32(in, r, i);
    sum_sq += x * x;
  }
  const double inv_rms = 1.0 / std::sqrt(sum_sq / double(hidden) + double(eps));
  for (int64_t i = 0; i < hidden; ++i) {
    const float normed = round_to(out.dtype, float(get_f32(in, r, i) * inv_rms));
    set_f32(out, r, i, float(double(normed) * get_f32(weight, i)));
  }
}

}  // namespace

void rms_norm(TensorView out, TensorView in, TensorView weight, float eps,
              [[maybe_unused]] Stream stream) {
  check_norm("rms_norm", out, in, weight);
  if (on_cuda("rms_norm", {out, in, weight})) {
    TIDAL_CUDA_CALL("rms_norm", cuda::rms_norm(out, in, weight, eps, stream));
    return;
  }
  ref::rms_norm(out, in, weight, eps);
}

void fused_add_rms_norm(TensorView out, TensorView residual, TensorView delta, TensorView weight,
                        float eps, [[maybe_unused]] Stream stream) {
  check_norm("fused_add_rms_norm", out, residual, weight);
  TIDAL_CHECK(same_shape(residual, delta) && residual.is_contiguous() && delta.is_contiguous() &&
                  (delta.dtype == residual.dtype || delta.dtype == DType::kF32),
              "fused_add_rms_norm: residual and delta must be contiguous, of one shape, and delta "
              "of residual's dtype or f32");
  if (on_cuda("fused_add_rms_norm", {out, residual, delta, weight})) {
    TIDAL_CUDA_CALL("fused_add_rms_norm",
                    cuda::fused_add_rms_norm(out, residual, delta, weight, eps, stream));
    return;
  }
  ref::fused_add_rms_norm(out, residual, delta, weight, eps);
}

void ref::rms_norm(TensorView out, TensorView in, TensorView weight, float eps) {
  for (int64_t r = 0; r < in.size(0); ++r) norm_row(out, in, weight, eps, r);
}

void ref::fused_add_rms_norm(TensorView out, TensorView residual, TensorView delta,
                             TensorView weight, float eps) {
  for (int64_t r = 0; r < residual.size(0); ++r) {
    for (int64_t i = 0; i < residual.size(1); ++i) {
      const float d = round_to(residual.dtype, get_f32(delta, r, i));  // as if stored there
      set_f32(residual, r, i, float(double(get_f32(residual, r, i)) + d));
    }
    norm_row(out, residual, weight, eps, r);
  }
}

}  // namespace tidal::kernels
