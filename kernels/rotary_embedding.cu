// SPDX-License-Identifier: Apache-2.0
// rotary_embedding: one block per token, in place on q and k (kernels/rotary.cuh: cos/sin in
// double into shared memory, then every (head, pair-vector) rotated with 16-byte loads of both
// halves). A programmatic dependent launch (kernels/pdl.cuh): it waits for the QKV projection in
// the kernel.
#include "kernels/pdl.cuh"
#include "kernels/rotary.cuh"
#include "kernels/rotary_embedding.h"

namespace tidal::kernels::cuda {

namespace {

constexpr int kThreads = 128;

// q:        [num_tokens, num_heads, head_dim], contiguous
// k:        [num_tokens, num_kv_heads, head_dim], contiguous
// positions: [num_tokens] i32, stride pos_stride
// inv_freq: [head_dim / 2] f32, stride freq_stride
template <typename T, int kVec>
__global__ void rotary_embedding_kernel(T* __restrict__ q, T* __restrict__ k,
                                        const int32_t* positions, int64_t pos_stride,
                                        const float* __restrict__ inv_freq, int64_t freq_stride,
                                        int num_heads, int num_kv_heads, int head_dim) {
  extern __shared__ float cos_sin[];  // [half] cos, then [half] sin
  pdl_launch_dependents();
  pdl_wait();
  const int64_t t = blockIdx.x;
  rotate_token<T, kVec>(q + t * num_heads * head_dim, k + t * num_kv_heads * head_dim,
                        float(positions[t * pos_stride]), inv_freq, freq_stride, num_heads,
                        num_kv_heads, head_dim, cos_sin);
}

template <typename T>
void launch(TensorView q, TensorView k, TensorView positions, TensorView inv_freq,
            cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const int64_t num_tokens = q.size(0);
  const int head_dim = int(q.size(2)), half = head_dim / 2;
  // Both halves of every head start on a 16-byte boundary when half fills whole vectors.
  const bool vec = half % kVec == 0 && aligned_to(q.data, 16) && aligned_to(k.data, 16);
  const size_t smem = size_t(head_dim) * sizeof(float);
  T* qp = static_cast<T*>(q.data);
  T* kp = static_cast<T*>(k.data);
  const int32_t* pos = static_cast<const int32_t*>(positions.data);
  const float* freq = static_cast<const float*>(inv_freq.data);
  const int hq = int(q.size(1)), hk = int(k.size(1));
  if (vec) {
    launch_programmatic(rotary_embedding_kernel<T, kVec>, dim3(unsigned(num_tokens)),
                        dim3(kThreads), smem, stream, qp, kp, pos, positions.stride[0], freq,
                        inv_freq.stride[0], hq, hk, head_dim);
  } else {
    launch_programmatic(rotary_embedding_kernel<T, 1>, dim3(unsigned(num_tokens)), dim3(kThreads),
                        smem, stream, qp, kp, pos, positions.stride[0], freq, inv_freq.stride[0],
                        hq, hk, head_dim);
  }
}

}  // namespace

// q: [num_tokens, num_heads, head_dim]; k: [num_tokens, num_kv_heads, head_dim] (in place)
// positions: [num_tokens] i32; inv_freq: [head_dim / 2] f32
void rotary_embedding(TensorView q, TensorView k, TensorView positions, TensorView inv_freq,
                      Stream stream) {
  TIDAL_NVTX_SCOPE("rotary_embedding");
  const int64_t num_tokens = q.size(0);
  if (num_tokens == 0 || q.size(2) == 0) return;
  TIDAL_CHECK(num_tokens < (int64_t(1) << 31) &&
                  (q.size(1) + k.size(1)) * q.size(2) < (int64_t(1) << 31) &&
                  q.size(2) * int64_t(sizeof(float)) <= 48 * 1024,
              "rotary_embedding: shape too large for the kernel");
  dispatch_float(q.dtype, "rotary_embedding", [&](auto tag) {
    launch<decltype(tag)>(q, k, positions, inv_freq, raw_stream(stream));
  });
  check_launch("rotary_embedding_kernel", stream);
}

}  // namespace tidal::kernels::cuda
