// SPDX-License-Identifier: Apache-2.0
// residual_add: out = a + b over contiguous tensors (out may alias a), f32 arithmetic, one
// rounding to the dtype. A grid-stride loop over 16-byte vectors when the three pointers allow,
// then a scalar tail; element-wise, so no thread reads what another writes (aliasing is safe).
#include <type_traits>

#include "kernels/elementwise.cuh"
#include "kernels/residual_add.h"

namespace tidal::kernels::cuda {

namespace {

constexpr int kThreads = 256;

// b's element as an addend: B is T, or f32 rounded to T first (as if stored in T).
template <typename T, typename B>
__device__ __forceinline__ float addend(float b) {
  if constexpr (std::is_same_v<B, T>) {
    return b;
  } else {
    return to_float(from_float<T>(b));
  }
}

// out, a, b: [n] flat; out may equal a (hence no __restrict__). B: T, or f32 (a row-parallel
// projection's partial sums reduced in f32).
template <typename T, typename B, int kVec>
__global__ void residual_add_kernel(T* out, const T* a, const B* b, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t num_vecs = n / kVec;
  for (int64_t v = tid; v < num_vecs; v += stride) {
    float x[kVec], y[kVec];
    load_floats<T, kVec>(a + v * kVec, x);
    load_floats<B, kVec>(b + v * kVec, y);
#pragma unroll
    for (int e = 0; e < kVec; ++e) x[e] += addend<T, B>(y[e]);
    store_floats<T, kVec>(out + v * kVec, x);
  }
  for (int64_t i = num_vecs * kVec + tid; i < n; i += stride) {
    out[i] = from_float<T>(to_float(a[i]) + addend<T, B>(to_float(b[i])));
  }
}

template <typename T, typename B>
void launch(TensorView out, TensorView a, TensorView b, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const int64_t n = out.numel();
  const bool vec = aligned_to(out.data, 16) && aligned_to(a.data, 16) &&
                   aligned_to(b.data, sizeof(B) * kVec);
  const int64_t work = vec ? ceil_div<int64_t>(n, kVec) : n;
  const int blocks = int(std::min<int64_t>(ceil_div<int64_t>(work, kThreads), sm_count() * 8));
  T* o = static_cast<T*>(out.data);
  const T* x = static_cast<const T*>(a.data);
  const B* y = static_cast<const B*>(b.data);
  if (vec) {
    residual_add_kernel<T, B, kVec><<<blocks, kThreads, 0, stream>>>(o, x, y, n);
  } else {
    residual_add_kernel<T, B, 1><<<blocks, kThreads, 0, stream>>>(o, x, y, n);
  }
}

}  // namespace

// out, a, b: [num_tokens, hidden], contiguous, one dtype (b: or f32)
void residual_add(TensorView out, TensorView a, TensorView b, Stream stream) {
  TIDAL_NVTX_SCOPE("residual_add");
  if (out.numel() == 0) return;
  dispatch_float(out.dtype, "residual_add", [&](auto tag) {
    using T = decltype(tag);
    if (b.dtype == out.dtype) {
      launch<T, T>(out, a, b, raw_stream(stream));
    } else {
      launch<T, float>(out, a, b, raw_stream(stream));
    }
  });
  check_launch("residual_add_kernel", stream);
}

}  // namespace tidal::kernels::cuda
