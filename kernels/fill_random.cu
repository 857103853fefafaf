// SPDX-License-Identifier: Apache-2.0
// fill_random: element i = mean + std * sqrt(-2 log u1) cos(2 pi u2), u1 = 1 - uniform(seed, 2i),
// u2 = uniform(seed, 2i + 1) (kernels/counter_rng.h), in double exactly as ref:: computes it,
// rounded to f32 and then to the dtype. Each element is a pure function of (seed, i), so a
// grid-stride loop over 16-byte output vectors needs no state. The double log/cos cost ~100 FP64
// operations an element: an H200 fills 16 GB of bf16 weights in a few tens of milliseconds.
#include "kernels/counter_rng.h"
#include "kernels/elementwise.cuh"
#include "kernels/fill_random.h"

namespace tidal::kernels::cuda {

namespace {

constexpr int kThreads = 256;
constexpr double kTwoPi = 2.0 * 3.14159265358979323846;  // == 2.0 * M_PI, as ref:: writes it

__device__ __forceinline__ float normal_sample(uint64_t seed, uint64_t i, double mean, double std) {
  const double u1 = 1.0 - random_uniform(seed, 2 * i);
  const double u2 = random_uniform(seed, 2 * i + 1);
  const double z = sqrt(-2.0 * log(u1)) * cos(kTwoPi * u2);
  // No fused multiply-add: ref:: (host) rounds the product and the sum separately.
  return float(__dadd_rn(mean, __dmul_rn(std, z)));
}

// out: [n] contiguous
template <typename T, int kVec>
__global__ void fill_random_kernel(T* __restrict__ out, int64_t n, uint64_t seed, double mean,
                                   double std) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t num_vecs = n / kVec;
  for (int64_t v = tid; v < num_vecs; v += stride) {
    float x[kVec];
#pragma unroll
    for (int e = 0; e < kVec; ++e) x[e] = normal_sample(seed, uint64_t(v * kVec + e), mean, std);
    store_floats<T, kVec>(out + v * kVec, x);
  }
  for (int64_t i = num_vecs * kVec + tid; i < n; i += stride) {
    out[i] = from_float<T>(normal_sample(seed, uint64_t(i), mean, std));
  }
}

template <typename T>
void launch(TensorView out, uint64_t seed, float mean, float std, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const int64_t n = out.numel();
  const bool vec = aligned_to(out.data, 16);
  const int64_t work = vec ? ceil_div<int64_t>(n, kVec) : n;
  // Compute-bound (FP64): enough resident blocks to fill every SM, then loop.
  const int blocks = int(std::min<int64_t>(ceil_div<int64_t>(work, kThreads), sm_count() * 16));
  T* o = static_cast<T*>(out.data);
  if (vec) {
    fill_random_kernel<T, kVec><<<blocks, kThreads, 0, stream>>>(o, n, seed, mean, std);
  } else {
    fill_random_kernel<T, 1><<<blocks, kThreads, 0, stream>>>(o, n, seed, mean, std);
  }
}

}  // namespace

// out: any contiguous f32/f16/bf16 tensor
void fill_random(TensorView out, uint64_t seed, float mean, float std, Stream stream) {
  TIDAL_NVTX_SCOPE("fill_random");
  if (out.numel() == 0) return;
  dispatch_float(out.dtype, "fill_random", [&](auto tag) {
    launch<decltype(tag)>(out, seed, mean, std, raw_stream(stream));
  });
  check_launch("fill_random_kernel", stream);
}

}  // namespace tidal::kernels::cuda
