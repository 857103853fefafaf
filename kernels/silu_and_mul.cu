// SPDX-License-Identifier: Apache-2.0
// silu_and_mul: out = silu(gate) * up in f32, one rounding to the dtype. gate and up may be the two
// column halves of the fused gate_up projection's output (row stride 2 * inter), so they are
// indexed by their own row strides. Grid: x over 16-byte vectors of a row, y over tokens (looping
// when there are more tokens than a grid's y holds). A programmatic dependent launch
// (kernels/pdl.cuh): it waits for the gate_up GEMV in the kernel, and the down projection after it
// is scheduled meanwhile.
#include "kernels/elementwise.cuh"
#include "kernels/pdl.cuh"
#include "kernels/silu_and_mul.h"

namespace tidal::kernels::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int64_t kMaxGridY = 65535;

// out:  [num_tokens, inter], contiguous
// gate: [num_tokens, inter], row stride gate_stride
// up:   [num_tokens, inter], row stride up_stride
// (gate and up are the previous kernel's output: no __restrict__, so their loads stay coherent.)
template <typename T, int kVec>
__global__ void silu_and_mul_kernel(T* __restrict__ out, const T* gate, const T* up,
                                    int64_t num_tokens, int64_t inter, int64_t gate_stride,
                                    int64_t up_stride) {
  pdl_launch_dependents();
  pdl_wait();  // every thread, before the early exit below
  const int64_t num_vecs = inter / kVec;
  const int64_t v = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (v >= num_vecs) return;
  for (int64_t t = blockIdx.y; t < num_tokens; t += gridDim.y) {
    float g[kVec], u[kVec];
    load_floats<T, kVec>(gate + t * gate_stride + v * kVec, g);
    load_floats<T, kVec>(up + t * up_stride + v * kVec, u);
#pragma unroll
    for (int e = 0; e < kVec; ++e) g[e] = silu_mul(g[e], u[e]);
    store_floats<T, kVec>(out + t * inter + v * kVec, g);
  }
}

template <typename T>
void launch(TensorView out, TensorView gate, TensorView up, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const int64_t num_tokens = out.size(0), inter = out.size(1);
  const size_t esize = sizeof(T);
  const bool vec = rows_vectorizable(out.data, num_tokens, inter, inter, esize) &&
                   rows_vectorizable(gate.data, num_tokens, inter, gate.stride[0], esize) &&
                   rows_vectorizable(up.data, num_tokens, inter, up.stride[0], esize);
  const int64_t num_vecs = vec ? inter / kVec : inter;
  const dim3 grid(unsigned(ceil_div<int64_t>(num_vecs, kThreads)),
                  unsigned(std::min(num_tokens, kMaxGridY)));
  T* o = static_cast<T*>(out.data);
  const T* g = static_cast<const T*>(gate.data);
  const T* u = static_cast<const T*>(up.data);
  if (vec) {
    launch_programmatic(silu_and_mul_kernel<T, kVec>, grid, dim3(kThreads), 0, stream, o, g, u,
                        num_tokens, inter, gate.stride[0], up.stride[0]);
  } else {
    launch_programmatic(silu_and_mul_kernel<T, 1>, grid, dim3(kThreads), 0, stream, o, g, u,
                        num_tokens, inter, gate.stride[0], up.stride[0]);
  }
}

}  // namespace

// out: [num_tokens, inter]; gate, up: [num_tokens, inter] with their own row strides
void silu_and_mul(TensorView out, TensorView gate, TensorView up, Stream stream) {
  TIDAL_NVTX_SCOPE("silu_and_mul");
  if (out.numel() == 0) return;
  dispatch_float(out.dtype, "silu_and_mul",
                 [&](auto tag) { launch<decltype(tag)>(out, gate, up, raw_stream(stream)); });
  check_launch("silu_and_mul_kernel", stream);
}

}  // namespace tidal::kernels::cuda
