// SPDX-License-Identifier: Apache-2.0
// The decode GEMV of linear and linear_split: out[t, o] = sum_i in[t, i] * weight[o, i] for a few
// tokens, f32 accumulation. Batch-1..8 decode is bound by streaming the weight, so the kernel is
// built to keep the memory system busy from its first cycle to its last:
// - a block of 4 warps owns kRows consecutive weight rows, and its warps split each row's 16-byte
//   vectors between them (split-K inside the block: warp w takes vectors (j * 4 + w) * 32 + lane,
//   so every warp-load is 512 contiguous bytes). Short rows finish in one pass and small matrices
//   still make many blocks (4096 x 4096: 2048 blocks; 1024 x 4096: 512), which the SMs' block
//   schedulers overlap; long rows (14336) take a few passes per block, not 14 per warp;
// - each thread keeps kDepth vector slots (one 16-byte vector of each of its rows) in flight and
//   refills a slot as soon as it has consumed it, so its loads never drain between passes
//   (8 loads = 128 bytes a thread in flight at all times; ~100 KB an SM);
// - weight loads are ld.global.nc.L1::no_allocate (read once: don't evict the activations); the
//   activations are ordinary loads, issued after the programmatic-launch wait (kernels/pdl.cuh),
//   their lines prefetched into L1 all at once right after it (so a block's passes do not wait on
//   one L2 round trip each); the first kDepth slots of weights are requested before the wait, so
//   the weight stream starts while the kernel that writes `in` still runs;
// - the 4 warps' sums meet in shared memory (one barrier); lane r * kTokens + m of warp 0 stores.
// Rows whose byte size or pointers are not 16-byte aligned (in_features not a multiple of 8 for
// 16-bit types, sliced activations) take the same kernel with one element a load (kVec = 1).
// Outputs: weight rows are split into up to 3 contiguous outputs (linear_split's fused QKV).
#include <cstring>
#include <type_traits>

#include "kernels/elementwise.cuh"
#include "kernels/linear_gemv.cuh"
#include "kernels/pdl.cuh"

namespace tidal::kernels::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int64_t kStep = 32 * kWarps;  // vectors of a row one slot covers, over the block

// Rows a block, and slots in flight a thread, by token tile: 8 weight loads in flight a thread,
// and the activations cost kTokens / kRows L1 loads per weight load.
template <int kTokens>
struct GemvConfig {
  static constexpr int kRows = kTokens >= 4 ? 4 : 2;
  static constexpr int kDepth = kTokens >= 4 ? 2 : 4;
  // Blocks an SM should hold (a register cap for ptxas): 6 (80 registers) at batch 1 and 2.
  static constexpr int kMinBlocks = kTokens <= 2 ? 8 : kTokens == 4 ? 4 : 3;
  static_assert(kRows * kTokens <= 32, "one lane of warp 0 stores each (row, token) sum");
};

// Where outputs go: output s holds weight rows [end[s - 1], end[s]) (end[-1] = 0), contiguous
// [num_tokens, end[s] - end[s - 1]]. Unused trailing outputs have end = out_features.
template <typename TOut>
struct GemvOut {
  TOut* ptr[kGemvMaxOutputs];
  int64_t end[kGemvMaxOutputs];
};

template <typename TOut>
__device__ __forceinline__ void store_out(const GemvOut<TOut>& o, int64_t row, int64_t token,
                                          float value) {
  // A select chain, not a dynamic index into the parameter struct.
  const int s = row < o.end[0] ? 0 : row < o.end[1] ? 1 : 2;
  TOut* base = s == 0 ? o.ptr[0] : s == 1 ? o.ptr[1] : o.ptr[2];
  const int64_t begin = s == 0 ? 0 : s == 1 ? o.end[0] : o.end[1];
  const int64_t width = (s == 0 ? o.end[0] : s == 1 ? o.end[1] : o.end[2]) - begin;
  base[token * width + (row - begin)] = from_float<TOut>(value);
}

// A weight vector: streamed past L1 when 16 bytes, a plain read-only load otherwise. volatile keeps
// the prologue's loads ahead of the programmatic wait (the weights never change during a step).
template <typename T, int kVec>
__device__ __forceinline__ Vec<T, kVec> load_weight(const T* p) {
  Vec<T, kVec> v;
  if constexpr (sizeof(Vec<T, kVec>) == 16) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    memcpy(&v, &r, sizeof(r));
  } else {
    static_assert(kVec == 1, "GEMV vectors are 16 bytes or one element");
    v.v[0] = __ldg(p);
  }
  return v;
}

// One slot: the vector at element `offset` of each of the block's rows.
template <typename T, int kVec, int kRows>
__device__ __forceinline__ void load_slot(Vec<T, kVec> (&slot)[kRows], const T* const (&w)[kRows],
                                          int64_t offset) {
#pragma unroll
  for (int r = 0; r < kRows; ++r) slot[r] = load_weight<T, kVec>(w[r] + offset);
}

// A vector's elements as floats. bf16 pairs are unpacked with integer ops on their 32-bit word
// (a bf16 is the high half of its f32): fewer live registers than element-wise conversions.
template <typename T, int kVec>
__device__ __forceinline__ void to_floats(const Vec<T, kVec>& v, float (&out)[kVec]) {
  if constexpr (std::is_same_v<T, __nv_bfloat16> && kVec % 2 == 0) {
    uint32_t words[kVec / 2];
    memcpy(words, &v, sizeof(words));
#pragma unroll
    for (int i = 0; i < kVec / 2; ++i) {
      out[2 * i] = __uint_as_float(words[i] << 16);
      out[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
    }
  } else {
#pragma unroll
    for (int e = 0; e < kVec; ++e) out[e] = to_float(v.v[e]);
  }
}

// An activation vector as floats: an ordinary coherent load (the previous kernel wrote it), kept
// in L1 for the SM's other blocks. Loaded as one uint4 (a copy of Vec<__nv_bfloat16, 8> compiles
// to 16 byte loads).
template <typename T, int kVec>
__device__ __forceinline__ void load_activation(const T* p, float (&out)[kVec]) {
  if constexpr (sizeof(Vec<T, kVec>) == 16) {
    const uint4 r = *reinterpret_cast<const uint4*>(p);
    Vec<T, kVec> v;
    memcpy(&v, &r, sizeof(r));
    to_floats<T, kVec>(v, out);
  } else {
    out[0] = to_float(*p);
  }
}

// acc[r][m] += dot(weight vector r, activation vector of token m at `offset`).
template <typename T, int kVec, int kRows, int kTokens>
__device__ __forceinline__ void accumulate(float (&acc)[kRows][kTokens],
                                           const Vec<T, kVec> (&wv)[kRows],
                                           const T* const (&x)[kTokens], int64_t offset) {
  float wf[kRows][kVec];
#pragma unroll
  for (int r = 0; r < kRows; ++r) to_floats<T, kVec>(wv[r], wf[r]);
#pragma unroll
  for (int m = 0; m < kTokens; ++m) {
    float xf[kVec];
    load_activation<T, kVec>(x[m] + offset, xf);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
#pragma unroll
      for (int e = 0; e < kVec; ++e) acc[r][m] = fmaf(wf[r][e], xf[e], acc[r][m]);
    }
  }
}

// out:    GemvOut, [num_tokens, width_s] each
// in:     [num_tokens, in_features], row stride in_stride (written by the previous kernel: no
//         __restrict__, read only after pdl_wait)
// weight: [out_features, in_features], contiguous
// Grid: x over blocks of kRows rows, y over tiles of kTokens tokens.
template <typename T, typename TOut, int kTokens, int kVec>
__global__ void __launch_bounds__(kThreads, GemvConfig<kTokens>::kMinBlocks)
    linear_gemv_kernel(GemvOut<TOut> out, const T* in, const T* __restrict__ weight,
                       int64_t num_tokens, int64_t in_stride, int64_t out_features,
                       int64_t in_features) {
  constexpr int kRows = GemvConfig<kTokens>::kRows;
  constexpr int kDepth = GemvConfig<kTokens>::kDepth;
  __shared__ float partial[kWarps][kRows * kTokens];
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t row0 = int64_t(blockIdx.x) * kRows;  // < out_features: the grid is ceil(N / kRows)
  const int64_t token0 = int64_t(blockIdx.y) * kTokens;

  // Rows past the end (last block) re-read the last valid one, so the loop needs no predicates;
  // their sums are never stored.
  const T* w[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int64_t row = row0 + r < out_features ? row0 + r : out_features - 1;
    w[r] = weight + row * in_features;
  }
  // This thread's vectors of a row: first + j * kStep for j in [0, n).
  const int64_t num_vecs = in_features / kVec;  // kVec divides in_features (host checks)
  const int64_t first = int64_t(warp) * 32 + lane;
  const int64_t n = first < num_vecs ? (num_vecs - 1 - first) / kStep + 1 : 0;

  // Prologue: the first kDepth slots, requested before the wait (weights are constants).
  Vec<T, kVec> slot[kDepth][kRows];
#pragma unroll
  for (int d = 0; d < kDepth; ++d) {
    if (d < n) load_slot<T, kVec, kRows>(slot[d], w, (first + d * kStep) * kVec);
  }
  pdl_wait();  // every thread, before the first activation load; nothing above returns early

  // Tokens past the batch (a tile of 4 for 3 tokens) re-read the last valid one.
  const T* x[kTokens];
#pragma unroll
  for (int m = 0; m < kTokens; ++m) {
    const int64_t token = token0 + m < num_tokens ? token0 + m : num_tokens - 1;
    x[m] = in + token * in_stride;
  }
  // Every activation line this thread will read, requested into L1 at once (a hint: it holds no
  // registers). Without it each slot's activation load is issued only after the previous slot's
  // math, which waits on the previous load: n dependent L2 round trips per block (~2 us for a
  // 4096-column pass) while the block's weights sit in registers and no bytes stream.
  for (int64_t j = 0; j < n; ++j) {
#pragma unroll
    for (int m = 0; m < kTokens; ++m) prefetch_l1(x[m] + (first + j * kStep) * kVec);
  }
  float acc[kRows][kTokens];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int m = 0; m < kTokens; ++m) acc[r][m] = 0.0f;
  }

  // Steady state: consume slot d (vector j), then refill it with vector j + kDepth, so kDepth - 1
  // to kDepth slots are always in flight.
  for (int64_t j0 = 0; j0 < n; j0 += kDepth) {
#pragma unroll
    for (int d = 0; d < kDepth; ++d) {
      const int64_t j = j0 + d;
      if (j < n) {
        const int64_t offset = (first + j * kStep) * kVec;
        accumulate<T, kVec, kRows, kTokens>(acc, slot[d], x, offset);
        if (j + kDepth < n) load_slot<T, kVec, kRows>(slot[d], w, offset + kDepth * kStep * kVec);
      }
    }
  }

  // Warp sums, then the block's: warp w's sums in partial[w], added in warp order by warp 0.
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int m = 0; m < kTokens; ++m) {
      const float sum = warp_sum(acc[r][m]);
      if (lane == 0) partial[warp][r * kTokens + m] = sum;
    }
  }
  __syncthreads();
  if (warp == 0 && lane < kRows * kTokens) {
    float sum = partial[0][lane];
#pragma unroll
    for (int i = 1; i < kWarps; ++i) sum += partial[i][lane];
    const int64_t row = row0 + lane / kTokens, token = token0 + lane % kTokens;
    if (row < out_features && token < num_tokens) store_out(out, row, token, sum);
  }
}

template <typename T, typename TOut, int kTokens>
void launch_tile(const GemvOut<TOut>& out, TensorView in, TensorView weight, bool vec,
                 cudaStream_t stream) {
  constexpr int kRows = GemvConfig<kTokens>::kRows;
  const int64_t num_tokens = in.size(0), in_features = in.size(1);
  const int64_t out_features = weight.size(0);
  const int64_t in_stride = num_tokens > 1 ? in.stride[0] : in_features;
  const dim3 grid(unsigned(ceil_div<int64_t>(out_features, kRows)),
                  unsigned(ceil_div<int64_t>(num_tokens, kTokens)));
  const T* x = static_cast<const T*>(in.data);
  const T* w = static_cast<const T*>(weight.data);
  if (vec) {
    launch_programmatic(linear_gemv_kernel<T, TOut, kTokens, 16 / sizeof(T)>, grid, dim3(kThreads),
                        0, stream, out, x, w, num_tokens, in_stride, out_features, in_features);
  } else {
    launch_programmatic(linear_gemv_kernel<T, TOut, kTokens, 1>, grid, dim3(kThreads), 0, stream,
                        out, x, w, num_tokens, in_stride, out_features, in_features);
  }
}

template <typename T, typename TOut>
void launch_typed(const TensorView* outs, int num_outs, TensorView in, TensorView weight,
                  cudaStream_t stream) {
  GemvOut<TOut> out;
  int64_t end = 0;
  for (int s = 0; s < kGemvMaxOutputs; ++s) {
    if (s < num_outs) {
      end += outs[s].size(1);
      out.ptr[s] = static_cast<TOut*>(outs[s].data);
    } else {
      out.ptr[s] = static_cast<TOut*>(outs[num_outs - 1].data);  // never selected: end repeats
    }
    out.end[s] = end;
  }
  TIDAL_CHECK(end == weight.size(0),
              "linear: the outputs' widths must add up to the weight's rows");
  const int64_t num_tokens = in.size(0), in_features = in.size(1);
  const bool vec =
      rows_vectorizable(in.data, num_tokens, in_features, in.stride[0], sizeof(T)) &&
      rows_vectorizable(weight.data, weight.size(0), in_features, in_features, sizeof(T));
  // The smallest tile that holds the batch (3 tokens run as a tile of 4, the 4th a copy of the
  // 3rd); beyond 8 tokens, tiles of 8 along the grid's y.
  if (num_tokens <= 1) {
    launch_tile<T, TOut, 1>(out, in, weight, vec, stream);
  } else if (num_tokens <= 2) {
    launch_tile<T, TOut, 2>(out, in, weight, vec, stream);
  } else if (num_tokens <= 4) {
    launch_tile<T, TOut, 4>(out, in, weight, vec, stream);
  } else {
    launch_tile<T, TOut, 8>(out, in, weight, vec, stream);
  }
}

}  // namespace

void linear_gemv(const TensorView* outs, int num_outs, TensorView in, TensorView weight,
                 cudaStream_t stream) {
  TIDAL_CHECK(num_outs >= 1 && num_outs <= kGemvMaxOutputs, "linear: 1 to 3 GEMV outputs");
  TIDAL_CHECK(ceil_div<int64_t>(in.size(0), 8) <= 65535 &&
                  ceil_div<int64_t>(weight.size(0), 2) < (int64_t(1) << 31),
              "linear: shape too large for the GEMV grid");
  // The outputs are the input's dtype, or f32 (logits from 16-bit weights).
  const bool f32_out = outs[0].dtype == DType::kF32;
  switch (in.dtype) {
    case DType::kF32: launch_typed<float, float>(outs, num_outs, in, weight, stream); return;
    case DType::kF16:
      if (f32_out) {
        launch_typed<__half, float>(outs, num_outs, in, weight, stream);
      } else {
        launch_typed<__half, __half>(outs, num_outs, in, weight, stream);
      }
      return;
    case DType::kBF16:
      if (f32_out) {
        launch_typed<__nv_bfloat16, float>(outs, num_outs, in, weight, stream);
      } else {
        launch_typed<__nv_bfloat16, __nv_bfloat16>(outs, num_outs, in, weight, stream);
      }
      return;
    default: TIDAL_CHECK(false, std::string("linear: unsupported dtype ") + dtype_name(in.dtype));
  }
}

}  // namespace tidal::kernels::cuda
