// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the element-wise and copy ops (embedding_lookup, gather_rows, residual_add,
// silu_and_mul, rms_norm, rotary_embedding, paged_kv_append, fill_random, linear): the host-side
// tests that decide whether a kernel may use 16-byte vector accesses, and the row gather kernel.
// Only .cu files include this.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <initializer_list>

#include "kernels/cuda_common.cuh"

namespace tidal::kernels::cuda {

inline bool aligned_to(const void* p, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// True when every row of a [rows, cols] view of `elem_bytes` elements with row stride `stride`
// (elements) starts on a 16-byte boundary and `cols` fills whole 16-byte vectors: then the kernel
// may move the row as Vec<T, 16 / elem_bytes>. A view of one row ignores its stride (a size-1
// dimension may carry any stride and still be contiguous).
inline bool rows_vectorizable(const void* data, int64_t rows, int64_t cols, int64_t stride,
                              size_t elem_bytes) {
  const int64_t vec = 16 / int64_t(elem_bytes);
  return aligned_to(data, 16) && cols % vec == 0 && (rows <= 1 || stride % vec == 0);
}

// The widest word (16, 4 or 2 bytes) that divides a row's byte count, the row strides and every
// base pointer, for dtype-agnostic row copies.
inline int copy_word_bytes(int64_t row_bytes, std::initializer_list<int64_t> stride_bytes,
                           std::initializer_list<const void*> ptrs) {
  for (int w : {16, 4, 2}) {
    bool ok = row_bytes % w == 0;
    for (int64_t s : stride_bytes) ok = ok && s % w == 0;
    for (const void* p : ptrs) ok = ok && aligned_to(p, uintptr_t(w));
    if (ok) return w;
  }
  return 1;
}

// Machine words of 2, 4 and 16 bytes, for copies that need not know the dtype.
template <int kBytes>
struct CopyWord;
template <>
struct CopyWord<16> {
  using type = uint4;
};
template <>
struct CopyWord<4> {
  using type = uint32_t;
};
template <>
struct CopyWord<2> {
  using type = uint16_t;
};
template <>
struct CopyWord<1> {
  using type = uint8_t;
};

// SwiGLU: silu(g) * u in f32. One formula for silu_and_mul and the gate_up GEMV that applies it
// (linear_swiglu), so the two round alike.
__device__ __forceinline__ float silu_mul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

// out[r, :] = in[index[r], :]: one block per output row, the row moved in words W. An index
// outside [0, num_in) is a bug in the caller (the ref:: twin dies on it): print it and trap, so the
// fault is loud instead of reading someone else's memory.
// out:   [num_rows, row_words] words, contiguous
// in:    [num_in, row_words] words, row stride in_stride (words)
// index: [num_rows] i32, stride index_stride
template <typename W>
__global__ void gather_rows_kernel(W* __restrict__ out, const W* __restrict__ in,
                                   const int32_t* __restrict__ index, int64_t index_stride,
                                   int64_t num_in, int64_t row_words, int64_t in_stride,
                                   int op_tag) {
  const int64_t r = blockIdx.x;
  const int32_t src = index[r * index_stride];
  if (src < 0 || src >= num_in) {
    if (threadIdx.x == 0) {
      printf("tidal %s: row %lld asks for index %d outside [0, %lld)\n",
             op_tag == 0 ? "embedding_lookup" : "gather_rows", (long long)r, src,
             (long long)num_in);
    }
    __trap();
  }
  const W* from = in + int64_t(src) * in_stride;
  W* to = out + r * row_words;
  for (int64_t w = threadIdx.x; w < row_words; w += blockDim.x) to[w] = from[w];
}

// Launches gather_rows_kernel over views (out contiguous, in with dense rows, index i32 1-D).
// op_tag: 0 embedding_lookup, 1 gather_rows (only for the error message).
void launch_gather_rows(TensorView out, TensorView in, TensorView index, int op_tag,
                        cudaStream_t stream);

}  // namespace tidal::kernels::cuda
