// SPDX-License-Identifier: Apache-2.0
// The rotation of one token's q and k heads (rotate-half pairs i, i + head_dim/2), shared by
// rotary_embedding's kernel, paged_kv_append's RoPE-then-append kernel and the QKV GEMV that
// rotates in its epilogue (linear_qkv_append), so all three round alike. The block first
// computes cos/sin for the token's head_dim/2 angles into shared memory: the angle is
// float(position) * inv_freq[i] in f32, exactly the ref's (and transformers') product, and its
// cos/sin are taken in double precision so positions of a million tokens (angles ~1e6 rad) keep
// full accuracy, matching ref's std::cos(double(angle)). Then every (head, pair-vector) of q and k
// is rotated with kVec-element loads of both halves.
#pragma once

#include "kernels/elementwise.cuh"

namespace tidal::kernels::cuda {

// cos and sin of the angle position * inv_freq (an f32 product, as ref and HF), in double.
__device__ __forceinline__ void rope_cos_sin(float position, float inv_freq, float* c, float* s) {
  const float angle = position * inv_freq;
  double sd, cd;
  sincos(double(angle), &sd, &cd);
  *c = float(cd);
  *s = float(sd);
}

// The rotate-half pair (a, b) = (x[i], x[i + head_dim/2]) by the angle with cosine c and sine s.
__device__ __forceinline__ void rotate_pair(float a, float b, float c, float s, float* ra,
                                            float* rb) {
  // Explicit fmaf of a product rounded on its own: the compiler may not contract these two
  // differently in different kernels (the RoPE kernels and the QKV GEMV's epilogue give the
  // same bits).
  *ra = fmaf(a, c, -__fmul_rn(b, s));
  *rb = fmaf(b, c, __fmul_rn(a, s));
}

// Every thread of the block calls it (it holds a barrier). cos_sin: head_dim floats of shared
// memory. q: [num_heads, head_dim] and k: [num_kv_heads, head_dim] of this token, rotated in place.
template <typename T, int kVec>
__device__ __forceinline__ void rotate_token(T* __restrict__ q, T* __restrict__ k, float position,
                                             const float* __restrict__ inv_freq,
                                             int64_t freq_stride, int num_heads, int num_kv_heads,
                                             int head_dim, float* cos_sin) {
  const int half = head_dim / 2;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    rope_cos_sin(position, inv_freq[i * freq_stride], &cos_sin[i], &cos_sin[half + i]);
  }
  __syncthreads();
  const int vecs_per_head = half / kVec;
  const int work = (num_heads + num_kv_heads) * vecs_per_head;
  for (int j = threadIdx.x; j < work; j += blockDim.x) {
    const int head = j / vecs_per_head;
    const int i0 = (j - head * vecs_per_head) * kVec;
    T* x = head < num_heads ? q + head * head_dim : k + (head - num_heads) * head_dim;
    float a[kVec], b[kVec], ra[kVec], rb[kVec];
    load_floats<T, kVec>(x + i0, a);
    load_floats<T, kVec>(x + half + i0, b);
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      rotate_pair(a[e], b[e], cos_sin[i0 + e], cos_sin[half + i0 + e], &ra[e], &rb[e]);
    }
    store_floats<T, kVec>(x + i0, ra);
    store_floats<T, kVec>(x + half + i0, rb);
  }
}

}  // namespace tidal::kernels::cuda
