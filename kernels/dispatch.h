// SPDX-License-Identifier: Apache-2.0
// Device dispatch shared by the ops' entry points: every view of a call lives on one device; a
// CPU call runs the ref:: twin, a CUDA call the cuda:: launcher (.cu beside the .cc).
#pragma once

#include <initializer_list>
#include <string>

#include "runtime/tensor.h"

namespace tidal::kernels {

// True when every non-empty view is on a CUDA device, false when every one is on the CPU;
// a mix is a bug in the caller.
inline bool on_cuda(const char* op, std::initializer_list<TensorView> views) {
  int cuda = 0, cpu = 0;
  for (const TensorView& v : views) {
    if (v.data == nullptr) continue;
    (v.device.kind == DeviceKind::kCuda ? cuda : cpu) += 1;
  }
  TIDAL_CHECK(cuda == 0 || cpu == 0,
              std::string(op) + ": views on different devices (host and CUDA mixed)");
  return cuda > 0;
}

// A contiguous 1-D view of `n` elements of `dtype` (a per-token array of a step plan).
inline void check_per_token(const TensorView& v, int64_t n, DType dtype, const char* op,
                            const char* name) {
  TIDAL_CHECK(v.rank == 1 && v.size(0) == n && v.dtype == dtype && v.is_contiguous(),
              std::string(op) + ": " + name + " must be contiguous " + dtype_name(dtype) + " [" +
                  std::to_string(n) + "], got " + v.describe());
}

// A contiguous view of exactly `shape` and `dtype`.
inline void check_shape(const TensorView& v, std::initializer_list<int64_t> shape, DType dtype,
                        const char* op, const char* name) {
  bool ok = v.rank == int(shape.size()) && v.dtype == dtype && v.is_contiguous();
  int d = 0;
  for (int64_t s : shape) ok = ok && d < v.rank && v.shape[d++] == s;
  std::string want;
  for (int64_t s : shape) want += (want.empty() ? "" : ", ") + std::to_string(s);
  TIDAL_CHECK(ok, std::string(op) + ": " + name + " must be contiguous " + dtype_name(dtype) +
                      " [" + want + "], got " + v.describe());
}

[[noreturn]] inline void no_cuda_build(const char* op) {
  TIDAL_CHECK(false, std::string(op) + ": CUDA views, but this build has no CUDA support");
  __builtin_unreachable();
}

}  // namespace tidal::kernels

// TIDAL_CUDA_CALL(op, call): runs the cuda:: launcher call in a CUDA build, aborts otherwise.
#if TIDAL_WITH_CUDA
#define TIDAL_CUDA_CALL(op, call) call
#else
// (The call is kept as an unevaluated operand: it still type-checks and uses its arguments.)
#define TIDAL_CUDA_CALL(op, call) \
  ((void)sizeof(((call), 0)), ::tidal::kernels::no_cuda_build(op))
#endif
