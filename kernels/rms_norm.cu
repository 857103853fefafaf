// SPDX-License-Identifier: Apache-2.0
// rms_norm and fused_add_rms_norm: one block per row. Pass 1 sums squares in f32 (the fused form
// first writes residual += delta, rounded to the dtype, and sums the squares of the stored values);
// a block reduction gives 1 / rms; pass 2 re-reads the row (an L1/L2 hit: a row is at most tens of
// KB) and writes round(x / rms) * weight, rounding the normalised value to the dtype before the
// weight multiply exactly as ref:: and transformers do. Re-reading instead of caching the row in
// registers keeps any hidden size correct without a size-specific instantiation. Each thread reads
// and writes only its own elements, so out may alias in (and residual) safely.
// Both are programmatic dependent launches (kernels/pdl.cuh): scheduled while the kernel before
// them drains, they wait for it in the kernel, and the GEMV after them is scheduled meanwhile.
// Rows of at most kMaxThreads 16-byte vectors (hidden 4096 in bf16: a decode step's norms) take a
// vector a thread (kOne): the weight is loaded before the wait (a constant: pdl.cuh's rule 2) and
// the row stays in registers, so after the reduction nothing waits on memory; the same operations
// in the same order, so the same bytes as the two-pass form.
#include <type_traits>

#include "kernels/elementwise.cuh"
#include "kernels/pdl.cuh"
#include "kernels/rms_norm.h"

namespace tidal::kernels::cuda {

namespace {

constexpr int kMaxThreads = 512;

// Pass 2: out_row[i] = round(x_row[i] * inv_rms) * weight[i].
template <typename T, int kVec>
__device__ __forceinline__ void normalize_row(T* out_row, const T* x_row, const T* weight,
                                              int64_t num_vecs, float inv_rms) {
  for (int64_t v = threadIdx.x; v < num_vecs; v += blockDim.x) {
    float x[kVec], w[kVec];
    load_floats<T, kVec>(x_row + v * kVec, x);
    load_floats<T, kVec>(weight + v * kVec, w);
#pragma unroll
    for (int e = 0; e < kVec; ++e) x[e] = to_float(from_float<T>(x[e] * inv_rms)) * w[e];
    store_floats<T, kVec>(out_row + v * kVec, x);
  }
}

__device__ __forceinline__ float inverse_rms(float sum_sq, int64_t hidden, float eps,
                                             float* scratch) {
  const float total = block_sum(sum_sq, scratch);
  return 1.0f / sqrtf(total / float(hidden) + eps);
}

// kOne: the thread's weight vector (16 bytes) into w before the wait, which then depends on it
// (pdl_wait_after: ptxas would otherwise place the load after the wait). Every thread waits.
template <typename T, int kVec>
__device__ __forceinline__ void weight_then_wait(const T* weight, bool mine, float (&w)[kVec]) {
  static_assert(sizeof(T) * kVec == 16, "one 16-byte vector");
  uint32_t dep = 0;
  if (mine) {
    const uint4 raw = *reinterpret_cast<const uint4*>(weight);
    dep = raw.x ^ raw.y ^ raw.z ^ raw.w;
    const Vec<T, kVec> v = *reinterpret_cast<const Vec<T, kVec>*>(&raw);
#pragma unroll
    for (int e = 0; e < kVec; ++e) w[e] = to_float(v.v[e]);
  }
  pdl_wait_after(dep);
}

// kOne pass 2: out_vec = round(x * inv_rms) * w, from registers.
template <typename T, int kVec>
__device__ __forceinline__ void normalize_vec(T* out_vec, float (&x)[kVec], const float (&w)[kVec],
                                              float inv_rms) {
#pragma unroll
  for (int e = 0; e < kVec; ++e) x[e] = to_float(from_float<T>(x[e] * inv_rms)) * w[e];
  store_floats<T, kVec>(out_vec, x);
}

// out: [num_tokens, hidden] contiguous; in: row stride in_stride; weight: [hidden]
template <typename T, int kVec, bool kOne>
__global__ void rms_norm_kernel(T* out, const T* in, const T* __restrict__ weight, int64_t hidden,
                                int64_t in_stride, float eps) {
  __shared__ float scratch[32];
  pdl_launch_dependents();
  const int64_t row = blockIdx.x, num_vecs = hidden / kVec;
  const T* x_row = in + row * in_stride;
  if constexpr (kOne) {
    const int64_t v = threadIdx.x;
    const bool mine = v < num_vecs;
    float w[kVec] = {}, x[kVec] = {};
    weight_then_wait<T, kVec>(weight + v * kVec, mine, w);  // `in` is the previous kernel's output
    float sum_sq = 0.0f;
    if (mine) {
      load_floats<T, kVec>(x_row + v * kVec, x);
#pragma unroll
      for (int e = 0; e < kVec; ++e) sum_sq += x[e] * x[e];
    }
    const float inv_rms = inverse_rms(sum_sq, hidden, eps, scratch);
    if (mine) normalize_vec<T, kVec>(out + row * hidden + v * kVec, x, w, inv_rms);
    return;
  }
  pdl_wait();  // `in` is the previous kernel's output
  float sum_sq = 0.0f;
  for (int64_t v = threadIdx.x; v < num_vecs; v += blockDim.x) {
    float x[kVec];
    load_floats<T, kVec>(x_row + v * kVec, x);
#pragma unroll
    for (int e = 0; e < kVec; ++e) sum_sq += x[e] * x[e];
  }
  const float inv_rms = inverse_rms(sum_sq, hidden, eps, scratch);
  normalize_row<T, kVec>(out + row * hidden, x_row, weight, num_vecs, inv_rms);
}

// r_vec += d_vec (rounded to T, as stored, into r and back to r_vec); r's squares added to sum_sq
// one after another (the order of sums the row's bytes depend on).
template <typename T, typename D, int kVec>
__device__ __forceinline__ void add_vec(T* r_vec, const D* d_vec, float (&r)[kVec],
                                        float& sum_sq) {
  float d[kVec];
  load_floats<T, kVec>(r_vec, r);
  load_floats<D, kVec>(d_vec, d);
#pragma unroll
  for (int e = 0; e < kVec; ++e) {
    if constexpr (!std::is_same_v<D, T>) d[e] = to_float(from_float<T>(d[e]));
    r[e] = to_float(from_float<T>(r[e] + d[e]));  // as stored
  }
#pragma unroll
  for (int e = 0; e < kVec; ++e) sum_sq += r[e] * r[e];
  store_floats<T, kVec>(r_vec, r);
}

// out, residual, delta: [num_tokens, hidden] contiguous; weight: [hidden]
// (delta is the previous kernel's output: no __restrict__, so its loads stay coherent.)
// D: T, or f32 (a row-parallel projection's partial sums reduced in f32 across ranks), rounded to
// T first so that the sum is the one a delta stored in T gives.
template <typename T, typename D, int kVec, bool kOne>
__global__ void fused_add_rms_norm_kernel(T* out, T* residual, const D* delta,
                                          const T* __restrict__ weight, int64_t hidden, float eps) {
  __shared__ float scratch[32];
  pdl_launch_dependents();
  const int64_t row = blockIdx.x, num_vecs = hidden / kVec;
  T* r_row = residual + row * hidden;
  const D* d_row = delta + row * hidden;
  if constexpr (kOne) {
    const int64_t v = threadIdx.x;
    const bool mine = v < num_vecs;
    float w[kVec] = {}, r[kVec] = {};
    weight_then_wait<T, kVec>(weight + v * kVec, mine, w);
    float sum_sq = 0.0f;
    if (mine) add_vec<T, D, kVec>(r_row + v * kVec, d_row + v * kVec, r, sum_sq);
    const float inv_rms = inverse_rms(sum_sq, hidden, eps, scratch);
    if (mine) normalize_vec<T, kVec>(out + row * hidden + v * kVec, r, w, inv_rms);
    return;
  }
  pdl_wait();
  float sum_sq = 0.0f;
  for (int64_t v = threadIdx.x; v < num_vecs; v += blockDim.x) {
    float r[kVec];
    add_vec<T, D, kVec>(r_row + v * kVec, d_row + v * kVec, r, sum_sq);
  }
  // Pass 2 reads back the residual this same thread stored (same v -> same thread), rounded.
  const float inv_rms = inverse_rms(sum_sq, hidden, eps, scratch);
  normalize_row<T, kVec>(out + row * hidden, r_row, weight, num_vecs, inv_rms);
}

// Threads: one 16-byte vector each up to kMaxThreads, a multiple of 32 (block_sum needs warps).
int threads_for(int64_t num_vecs) {
  return int(
      std::min<int64_t>(kMaxThreads, std::max<int64_t>(32, ceil_div<int64_t>(num_vecs, 32) * 32)));
}

// Whether a row of num_vecs 16-byte vectors takes the kOne kernels. TIDAL_NORM_ONE=0 keeps the
// two-pass form for every row (the A/B switch).
bool one_vector_a_thread(int64_t num_vecs) {
  static const bool enabled = switch_on("TIDAL_NORM_ONE");
  return enabled && num_vecs <= kMaxThreads;
}

template <typename T>
void launch_norm(TensorView out, TensorView in, TensorView weight, float eps, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const int64_t rows = in.size(0), hidden = in.size(1);
  const bool vec = rows_vectorizable(out.data, rows, hidden, hidden, sizeof(T)) &&
                   rows_vectorizable(in.data, rows, hidden, in.stride[0], sizeof(T)) &&
                   aligned_to(weight.data, 16);
  T* o = static_cast<T*>(out.data);
  const T* x = static_cast<const T*>(in.data);
  const T* w = static_cast<const T*>(weight.data);
  if (vec) {
    const auto kernel = one_vector_a_thread(hidden / kVec) ? rms_norm_kernel<T, kVec, true>
                                                           : rms_norm_kernel<T, kVec, false>;
    launch_programmatic(kernel, dim3(unsigned(rows)), dim3(threads_for(hidden / kVec)), 0, stream,
                        o, x, w, hidden, in.stride[0], eps);
  } else {
    launch_programmatic(rms_norm_kernel<T, 1, false>, dim3(unsigned(rows)),
                        dim3(threads_for(hidden)), 0, stream, o, x, w, hidden, in.stride[0], eps);
  }
}

template <typename T, typename D>
void launch_fused(TensorView out, TensorView residual, TensorView delta, TensorView weight,
                  float eps, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const int64_t rows = residual.size(0), hidden = residual.size(1);
  const bool vec = hidden % kVec == 0 && aligned_to(out.data, 16) &&
                   aligned_to(residual.data, 16) && aligned_to(delta.data, sizeof(D) * kVec) &&
                   aligned_to(weight.data, 16);
  T* o = static_cast<T*>(out.data);
  T* r = static_cast<T*>(residual.data);
  const D* d = static_cast<const D*>(delta.data);
  const T* w = static_cast<const T*>(weight.data);
  if (vec) {
    const auto kernel = one_vector_a_thread(hidden / kVec)
                            ? fused_add_rms_norm_kernel<T, D, kVec, true>
                            : fused_add_rms_norm_kernel<T, D, kVec, false>;
    launch_programmatic(kernel, dim3(unsigned(rows)), dim3(threads_for(hidden / kVec)), 0, stream,
                        o, r, d, w, hidden, eps);
  } else {
    launch_programmatic(fused_add_rms_norm_kernel<T, D, 1, false>, dim3(unsigned(rows)),
                        dim3(threads_for(hidden)), 0, stream, o, r, d, w, hidden, eps);
  }
}

}  // namespace

// out: [num_tokens, hidden] contiguous; in: [num_tokens, hidden] dense rows; weight: [hidden]
void rms_norm(TensorView out, TensorView in, TensorView weight, float eps, Stream stream) {
  TIDAL_NVTX_SCOPE("rms_norm");
  if (in.numel() == 0) return;
  TIDAL_CHECK(in.size(0) < (int64_t(1) << 31), "rms_norm: more rows than a grid holds");
  dispatch_float(in.dtype, "rms_norm", [&](auto tag) {
    launch_norm<decltype(tag)>(out, in, weight, eps, raw_stream(stream));
  });
  check_launch("rms_norm_kernel", stream);
}

// out, residual, delta: [num_tokens, hidden] contiguous (delta: residual's dtype or f32);
// weight: [hidden]
void fused_add_rms_norm(TensorView out, TensorView residual, TensorView delta, TensorView weight,
                        float eps, Stream stream) {
  TIDAL_NVTX_SCOPE("fused_add_rms_norm");
  if (residual.numel() == 0) return;
  TIDAL_CHECK(residual.size(0) < (int64_t(1) << 31),
              "fused_add_rms_norm: more rows than a grid holds");
  dispatch_float(residual.dtype, "fused_add_rms_norm", [&](auto tag) {
    using T = decltype(tag);
    if (delta.dtype == residual.dtype) {
      launch_fused<T, T>(out, residual, delta, weight, eps, raw_stream(stream));
    } else {
      launch_fused<T, float>(out, residual, delta, weight, eps, raw_stream(stream));
    }
  });
  check_launch("fused_add_rms_norm_kernel", stream);
}

}  // namespace tidal::kernels::cuda
