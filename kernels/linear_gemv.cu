// SPDX-License-Identifier: Apache-2.0
// The decode GEMV of linear: out[t, o] = sum_i in[t, i] * weight[o, i] for a few tokens, f32
// accumulation. Batch-1..8 decode is bound by streaming the weight, so the kernel is built to read
// every weight byte once at close to full HBM bandwidth:
// - each warp owns kRows consecutive weight rows; its 32 lanes walk a row in 16-byte vectors
//   (512 contiguous bytes a warp-load), kUnroll vectors of each row in flight per lane before any
//   arithmetic, so 8 independent 16-byte loads per lane hide DRAM latency;
// - weight loads are ld.global.nc.L1::no_allocate (read once: don't evict the activations);
// - the activations (all tokens of the tile) are read through L1 (coherent loads) and each loaded
//   vector is reused for the warp's kRows rows; each weight element is read once for every token;
// - 4 warps a block, so a 4096-row matrix gives 1024 blocks (4 rows a block) at batch 1, enough
//   to keep 132 SMs full: 4096 x 4096 is 4096 warps, all resident at once, 16 MB in flight.
// Rows whose byte size or pointers are not 16-byte aligned (in_features not a multiple of 8 for
// 16-bit types, sliced activations) take the same kernel with one element a load (kVec = 1).
// The reduction over the 32 lanes is a butterfly per (row, token); lane r * kTokens + m stores.
// The rows may belong to up to three outputs (linear_split: the stacked q/k/v weight streamed in
// one launch); a sum goes to the output whose row range holds it, which costs two compares at the
// store and nothing in the streaming loop.
// A programmatic dependent launch (kernels/pdl.cuh): the blocks that fit beside the kernel before
// it are scheduled early; each writes its first step of weight loads (8 vectors a lane, constants)
// before the wait for that kernel and reads the activations, that op's output, after it with
// coherent loads (through L1, shared by the block's warps). ptxas issues those first loads after
// the wait all the same (SASS of e3bfdbb), so no weight streams early; yet this form measured
// 0.03-0.08 ms a step faster with PDL on than off for llama3-8b, where the plain loop (727cb1f)
// measured 0 to 0.04 ms slower, on the H200 (different runs). An L2 bulk prefetch before the wait
// made every GEMV 1-4 us slower, and a wait given the loaded words as an asm operand it does not
// use changed nothing (the operand never reaches the PTX instruction: SASS of 2ccfbe4 still
// waits first); benchmarks/results/PERF_NOTES.md.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "kernels/elementwise.cuh"
#include "kernels/fp8_e4m3.cuh"
#include "kernels/linear_gemv.cuh"
#include "kernels/paged_kv_append.cuh"
#include "kernels/pdl.cuh"
#include "kernels/rotary.cuh"

namespace tidal::kernels::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;

// Rows a warp and loads in flight per row, by token tile. The activations cost tokens / rows
// L1 loads per weight load, so wider batches share each activation vector over more rows. One
// token: a row a warp, 8 vectors a lane in flight (H200, kernel_bench, against 2 rows x 4:
// 4096-row matrices 16.1 -> 14.2 us, the 14336-column down projection 40.1 -> 35.1 us, the same
// elsewhere; `benchmarks/results/PERF_NOTES.md`).
template <int kTokens>
struct GemvConfig {
  static constexpr int kRows = kTokens >= 4 ? 4 : kTokens == 2 ? 2 : 1;
  static constexpr int kUnroll = kTokens >= 4 ? 2 : kTokens == 2 ? 4 : 8;
  // linear_gemv_kernel's resident blocks an SM (launch bound). One token: 8 (64 registers), so a
  // 4096-row matrix (1024 blocks: o, down) is one wave on 132 SMs; at 80 registers (6 blocks an
  // SM) its last 232 blocks started only as the first ones left. H200, in a graph: o 10.3 ->
  // 9.2 us, llama3-8b down 30.8 -> 28.5, llama2-7b down 26.0 -> 23.1; llama2-7b steps -0.10 to
  // -0.15 ms, llama3-8b within +-0.05. The fused QKV and SwiGLU GEMVs keep their registers: so
  // bounded they spilled (QKV) or gained nothing in the step (PERF_NOTES.md).
  static constexpr int kMinBlocks = kTokens == 1 ? 8 : 1;
  static_assert(kRows * kTokens <= 32, "one lane stores each (row, token) sum");
};

// The fused QKV GEMV's layout: at one token 2 rows x 4 vectors a warp (the same 8 loads a lane in
// flight as 1 x 8, and the same order of sums: every lane adds its vectors in the same sequence),
// so llama3-8b's 6144 rows are 768 blocks, one wave at 6 blocks an SM: its blocks leave the SMs
// together, and the attention split blocks after it (2 an SM, each needing half an SM's
// registers) start their pre-wait prologue everywhere at once instead of behind a second wave.
template <int kTokens>
struct QkvConfig : GemvConfig<kTokens> {
  static constexpr int kRows = kTokens == 1 ? 2 : GemvConfig<kTokens>::kRows;
  static constexpr int kUnroll = kTokens == 1 ? 4 : GemvConfig<kTokens>::kUnroll;
  static_assert(kRows * kTokens <= 32, "one lane stores each (row, token) sum");
};

// A weight vector: streamed past L1 when 16 bytes, a plain read-only load otherwise.
template <typename T, int kVec>
__device__ __forceinline__ Vec<T, kVec> load_weight(const T* p) {
  Vec<T, kVec> v;
  if constexpr (sizeof(Vec<T, kVec>) == 16) {
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
    memcpy(&v, &r, sizeof(r));
  } else {
    static_assert(kVec == 1, "GEMV vectors are 16 bytes or one element");
    v.v[0] = __ldg(p);
  }
  return v;
}

// An activation vector as floats, through L1 (it is reused by every row of the block's warps). A
// coherent load, not __ldg: the kernel before this one may still have been writing it when this
// grid started (kernels/pdl.cuh).
template <typename T, int kVec>
__device__ __forceinline__ void load_activation(const T* p, float (&out)[kVec]) {
  if constexpr (sizeof(Vec<T, kVec>) == 16) {
    const uint4 r = *reinterpret_cast<const uint4*>(p);
    Vec<T, kVec> v;
    memcpy(&v, &r, sizeof(r));
#pragma unroll
    for (int e = 0; e < kVec; ++e) out[e] = to_float(v.v[e]);
  } else {
    out[0] = to_float(*p);
  }
}

// Where each weight row's sum goes: output p holds rows [begin[p], begin[p + 1]) (begin of an
// unused output: past every row) as a [num_tokens, width[p]] matrix.
template <typename TOut>
struct GemvOutputs {
  TOut* ptr[kGemvMaxOutputs];
  int64_t begin[kGemvMaxOutputs];
  int64_t width[kGemvMaxOutputs];

  // Selects, not an index: a runtime index into the kernel parameter would copy the struct to
  // local memory (a stack frame in every thread). An empty output's range is empty: a row at its
  // begin is past it and lands in the next one.
  __device__ __forceinline__ TOut* at(int64_t token, int64_t row) const {
    const bool in1 = row >= begin[1], in2 = row >= begin[2];
    TOut* const base = in2 ? ptr[2] : in1 ? ptr[1] : ptr[0];
    const int64_t first = in2 ? begin[2] : in1 ? begin[1] : begin[0];
    const int64_t w = in2 ? width[2] : in1 ? width[1] : width[0];
    return base + token * w + (row - first);
  }
};

// acc[r][m] += dot(weight vector r, activation vector of token m at `offset`).
template <typename T, int kVec, int kRows, int kTokens>
__device__ __forceinline__ void accumulate(float (&acc)[kRows][kTokens],
                                           const Vec<T, kVec> (&wv)[kRows],
                                           const T* const (&x)[kTokens], int64_t offset) {
  float wf[kRows][kVec];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int e = 0; e < kVec; ++e) wf[r][e] = to_float(wv[r].v[e]);
  }
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

// After the wait, this warp's second full step of weights (the first one's loads are back in
// registers by then) is requested into L2, one cp.async.bulk.prefetch.L2 a row (lane r: row r's
// step, contiguous): no registers, nothing for ptxas to sink. At the wait's release every block
// of a one-wave GEMV holds its first step and reads the activations (an L2 round trip) and does
// that step's FMAs before its second step's loads leave, so without this nothing reads DRAM from
// the release until a DRAM latency after that. Measured at one token (H100, llama3-8b at 10K and
// 100K): -0.06 to -0.09 ms a step in the QKV, o, down and LM head GEMVs together, -0.03 to -0.05
// in each of the first three alone, but +0.075 ms in the SwiGLU GEMV (the layer's one GEMV of
// several waves; why it loses is not established), which therefore does not prefetch; tiles of
// more tokens are unmeasured and do not either. Issued before the wait, such requests queued
// ahead of the kernel before's last loads (39bae5b). On an H200 the same prefetch made every step
// 0.02-0.07 ms slower (twenty-first session), so it runs by card: gemv_prefetch(). 16-byte vectors
// only.
template <typename T, int kVec, int kRows, int kUnroll>
__device__ __forceinline__ void prefetch_second_step(const T* const (&w)[kRows],
                                                     int64_t num_vecs) {
  constexpr int kStepVecs = 32 * kUnroll;  // a lane's kUnroll vectors of each row, a warp's step
  static_assert(kRows <= 32, "a lane a row");
  if constexpr (sizeof(Vec<T, kVec>) == 16) {
    if (2 * kStepVecs > num_vecs) return;  // no second full step
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (lane == r) {
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(w[r] + kStepVecs * kVec),
                     "r"(uint32_t(kStepVecs * 16))
                     : "memory");
      }
    }
  }
}

// stream_rows' hook for a kernel's own reads before the wait: none.
struct NoEarlyReads {
  __device__ __forceinline__ uint32_t operator()() const { return 0u; }
};

// acc[r][m] = dot(weight row w[r], activation row x[m]) over in_features, this lane's share
// (before the butterfly). The PDL wait is in here: after the first full step's weight loads,
// depending on them (the activations are read after it). early(), called once the first weight
// loads are issued and before the wait, may read what the kernel before cannot be writing (see
// linear_qkv_append_kernel); the wait depends on the word it returns as on the weights'. Right
// after the wait, prefetch_second_step() when `prefetch`.
template <typename T, int kTokens, int kVec, typename Config = GemvConfig<kTokens>,
          typename Early = NoEarlyReads>
__device__ __forceinline__ void stream_rows(float (&acc)[Config::kRows][kTokens],
                                            const T* const (&w)[Config::kRows],
                                            const T* const (&x)[kTokens], int64_t in_features,
                                            bool prefetch, Early early = {}) {
  constexpr int kRows = Config::kRows;
  constexpr int kUnroll = Config::kUnroll;
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int m = 0; m < kTokens; ++m) acc[r][m] = 0.0f;
  }

  const int64_t num_vecs = in_features / kVec;  // kVec divides in_features (host checks)
  int64_t base = 0;
  // The first full step's weights are loaded before the wait (constants), the rest after it.
  if (32 * kUnroll <= num_vecs) {
    Vec<T, kVec> wv[kUnroll][kRows];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int r = 0; r < kRows; ++r)
        wv[u][r] = load_weight<T, kVec>(w[r] + (u * 32 + lane) * kVec);
    }
    // The wait depends on a word of every vector: all of them are in flight (and back) first.
    uint32_t dep = early();
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        uint32_t word = 0;
        memcpy(&word, &wv[u][r], sizeof(wv[u][r]) < 4 ? sizeof(wv[u][r]) : 4);
        dep ^= word;
      }
    }
    pdl_wait_after(dep);
    if (kTokens == 1 && prefetch) prefetch_second_step<T, kVec, kRows, kUnroll>(w, num_vecs);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      accumulate<T, kVec, kRows, kTokens>(acc, wv[u], x, (u * 32 + lane) * kVec);
    }
    base = 32 * kUnroll;
  } else if constexpr (std::is_same_v<Early, NoEarlyReads>) {
    pdl_wait();
  } else {
    pdl_wait_after(early());
  }
  // Full steps: every lane loads kUnroll vectors of each row, all issued before the math.
  for (; base + 32 * kUnroll <= num_vecs; base += 32 * kUnroll) {
    Vec<T, kVec> wv[kUnroll][kRows];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        wv[u][r] = load_weight<T, kVec>(w[r] + (base + u * 32 + lane) * kVec);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      accumulate<T, kVec, kRows, kTokens>(acc, wv[u], x, (base + u * 32 + lane) * kVec);
    }
  }
  // The rest of the row: fewer than 32 * kUnroll vectors, one at a time a lane.
  for (int64_t v = base + lane; v < num_vecs; v += 32) {
    Vec<T, kVec> wv[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) wv[r] = load_weight<T, kVec>(w[r] + v * kVec);
    accumulate<T, kVec, kRows, kTokens>(acc, wv, x, v * kVec);
  }
}

// x[m]: token token0 + m's activation row; tokens past the batch (a tile of 4 for 3 tokens)
// re-read the last one, so the streaming loop needs no predicates (their sums are never stored).
template <typename T, int kTokens>
__device__ __forceinline__ void token_rows(const T* (&x)[kTokens], const T* in, int64_t token0,
                                           int64_t num_tokens, int64_t in_stride) {
#pragma unroll
  for (int m = 0; m < kTokens; ++m) {
    const int64_t token = token0 + m < num_tokens ? token0 + m : num_tokens - 1;
    x[m] = in + token * in_stride;
  }
}

// The warp's (row r, token m) sums, each rounded to T as a stored output would be, into
// s_sum[warp][r][m] (lane r * kTokens + m writes). The caller syncs the block before reading.
template <typename T, int kRows, int kTokens>
__device__ __forceinline__ void sums_to_shared(const float (&acc)[kRows][kTokens],
                                               float (&s_sum)[kWarps][kRows][kTokens]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int m = 0; m < kTokens; ++m) {
      const float sum = warp_sum(acc[r][m]);
      if (lane == r * kTokens + m) s_sum[warp][r][m] = to_float(from_float<T>(sum));
    }
  }
}

// out:    the outputs the weight's rows are split over (GemvOutputs)
// in:     [num_tokens, in_features], row stride in_stride (no __restrict__: see load_activation)
// weight: [out_features, in_features], contiguous
// Grid: x over blocks of kWarps * kRows rows, y over tiles of kTokens tokens.
template <typename T, typename TOut, int kTokens, int kVec>
__global__ void __launch_bounds__(kThreads, GemvConfig<kTokens>::kMinBlocks)
    linear_gemv_kernel(const GemvOutputs<TOut> out, const T* in, const T* __restrict__ weight,
                       int64_t num_tokens, int64_t in_stride, int64_t out_features,
                       int64_t in_features, bool prefetch) {
  constexpr int kRows = GemvConfig<kTokens>::kRows;
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31;
  const int64_t row0 = (int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5)) * kRows;
  if (row0 >= out_features) {  // whole warps leave; nothing below syncs the block
    pdl_wait();
    return;
  }
  const int64_t token0 = int64_t(blockIdx.y) * kTokens;

  // Rows past the end (last warp) re-read the last one, as tokens past the batch do (token_rows).
  const T* w[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int64_t row = row0 + r < out_features ? row0 + r : out_features - 1;
    w[r] = weight + row * in_features;
  }
  const T* x[kTokens];
  token_rows<T, kTokens>(x, in, token0, num_tokens, in_stride);

  float acc[kRows][kTokens];
  stream_rows<T, kTokens, kVec>(acc, w, x, in_features, prefetch);

#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int m = 0; m < kTokens; ++m) {
      const float sum = warp_sum(acc[r][m]);
      if (lane == r * kTokens + m && row0 + r < out_features && token0 + m < num_tokens) {
        *out.at(token0 + m, row0 + r) = from_float<TOut>(sum);
      }
    }
  }
}

// Calls f(std::integral_constant<int, kTokens>) for the smallest token tile that holds the batch
// (3 tokens run as a tile of 4, the 4th a copy of the 3rd); beyond 8 tokens, tiles of 8 along the
// grid's y.
template <typename F>
void with_tile(int64_t num_tokens, F&& f) {
  if (num_tokens <= 1) {
    f(std::integral_constant<int, 1>{});
  } else if (num_tokens <= 2) {
    f(std::integral_constant<int, 2>{});
  } else if (num_tokens <= 4) {
    f(std::integral_constant<int, 4>{});
  } else {
    f(std::integral_constant<int, 8>{});
  }
}

// Whether the QKV and plain GEMVs prefetch their second step after the wait
// (prefetch_second_step). It pays on one card and costs on the other, every llama3-8b and
// llama2-7b step at K = 2048, 10K-100K (PERF_NOTES.md, twentieth and twenty-first sessions):
// H100 80GB HBM3 -0.03 to -0.09 ms, H200 +0.02 to +0.07 ms. So by default it is on where the
// device is the card it was measured to pay on and off elsewhere (an unmeasured card keeps the
// GEMV it had); TIDAL_GEMV_PREFETCH=1 or 0 forces it either way (the A/B switch). Decided once,
// on the first launch's device.
inline bool gemv_prefetch() {
  static const bool enabled = [] {
    if (const char* v = std::getenv("TIDAL_GEMV_PREFETCH")) return std::strcmp(v, "0") != 0;
    int device = 0;
    cudaDeviceProp prop{};
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
      (void)cudaGetLastError();  // not left for the next launch's check to report
      return false;
    }
    return std::strstr(prop.name, "H100 80GB HBM3") != nullptr;
  }();
  return enabled;
}

// 16-byte vectors for every activation and weight row (else one element a load).
template <typename T>
bool gemv_vectorizable(TensorView in, TensorView weight) {
  const int64_t num_tokens = in.size(0), in_features = in.size(1);
  return rows_vectorizable(in.data, num_tokens, in_features, in.stride[0], sizeof(T)) &&
         rows_vectorizable(weight.data, weight.size(0), in_features, in_features, sizeof(T));
}

template <typename T, typename TOut, int kTokens>
void launch_tile(const GemvOutputs<TOut>& o, TensorView in, TensorView weight, bool vec,
                 cudaStream_t stream) {
  constexpr int kRows = GemvConfig<kTokens>::kRows;
  const int64_t num_tokens = in.size(0), in_features = in.size(1);
  const int64_t out_features = weight.size(0);
  const int64_t in_stride = num_tokens > 1 ? in.stride[0] : in_features;
  const dim3 grid(unsigned(ceil_div<int64_t>(out_features, kWarps * kRows)),
                  unsigned(ceil_div<int64_t>(num_tokens, kTokens)));
  const T* x = static_cast<const T*>(in.data);
  const T* w = static_cast<const T*>(weight.data);
  if (vec) {
    launch_programmatic(linear_gemv_kernel<T, TOut, kTokens, 16 / sizeof(T)>, grid, dim3(kThreads),
                        0, stream, o, x, w, num_tokens, in_stride, out_features, in_features,
                        gemv_prefetch());
  } else {
    launch_programmatic(linear_gemv_kernel<T, TOut, kTokens, 1>, grid, dim3(kThreads), 0, stream, o,
                        x, w, num_tokens, in_stride, out_features, in_features, false);
  }
}

// act[t, i] = silu_mul(gate[t, i], up[t, i]), gate and up rows i and inter + i of the weight, each
// sum rounded to T first: what linear() into gate_up then silu_and_mul() compute. A block serves
// kPairs = 2 kRows (gate, up) pairs: warps 0 and 1 the gate rows, 2 and 3 the up rows, kRows
// each; the sums meet in shared memory. No warp leaves early (the block syncs): rows past inter
// re-read the last one and are never stored.
// act:    [num_tokens, inter], contiguous
// in:     [num_tokens, in_features], row stride in_stride
// weight: [2 inter, in_features], contiguous
// Grid: x over blocks of kPairs pairs, y over tiles of kTokens tokens.
template <typename T, int kTokens, int kVec>
__global__ void __launch_bounds__(kThreads)
    linear_swiglu_kernel(T* __restrict__ act, const T* in, const T* __restrict__ weight,
                         int64_t num_tokens, int64_t in_stride, int64_t inter,
                         int64_t in_features) {
  constexpr int kRows = GemvConfig<kTokens>::kRows;
  constexpr int kPairs = 2 * kRows;
  static_assert(kWarps == 4, "two gate warps, two up warps");
  __shared__ float s_sum[kWarps][kRows][kTokens];
  pdl_launch_dependents();
  const int warp = threadIdx.x >> 5;
  const int64_t pair0 = int64_t(blockIdx.x) * kPairs, token0 = int64_t(blockIdx.y) * kTokens;
  const int64_t first = (warp >> 1) * inter + pair0 + (warp & 1) * kRows;  // this warp's row 0
  const T* w[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int64_t pair = pair0 + (warp & 1) * kRows + r;
    w[r] = weight + (pair < inter ? first + r : (warp >> 1) * inter + inter - 1) * in_features;
  }
  const T* x[kTokens];
  token_rows<T, kTokens>(x, in, token0, num_tokens, in_stride);
  float acc[kRows][kTokens];
  stream_rows<T, kTokens, kVec>(acc, w, x, in_features, /*prefetch=*/false);
  sums_to_shared<T, kRows, kTokens>(acc, s_sum);
  __syncthreads();
  for (int i = threadIdx.x; i < kPairs * kTokens; i += kThreads) {
    const int lp = i / kTokens, m = i % kTokens;  // the block's pair lp: gate warp lp / kRows
    const int gw = lp / kRows, r = lp % kRows;
    const int64_t pair = pair0 + lp, token = token0 + m;
    if (pair < inter && token < num_tokens) {
      act[token * inter + pair] = from_float<T>(silu_mul(s_sum[gw][r][m], s_sum[gw + 2][r][m]));
    }
  }
}

template <typename T, int kTokens>
void launch_swiglu_tile(TensorView act, TensorView in, TensorView weight, bool vec,
                        cudaStream_t stream) {
  constexpr int kPairs = 2 * GemvConfig<kTokens>::kRows;
  const int64_t num_tokens = in.size(0), in_features = in.size(1), inter = act.size(1);
  const int64_t in_stride = num_tokens > 1 ? in.stride[0] : in_features;
  const dim3 grid(unsigned(ceil_div<int64_t>(inter, kPairs)),
                  unsigned(ceil_div<int64_t>(num_tokens, kTokens)));
  T* a = static_cast<T*>(act.data);
  const T* x = static_cast<const T*>(in.data);
  const T* w = static_cast<const T*>(weight.data);
  if (vec) {
    launch_programmatic(linear_swiglu_kernel<T, kTokens, 16 / sizeof(T)>, grid, dim3(kThreads), 0,
                        stream, a, x, w, num_tokens, in_stride, inter, in_features);
  } else {
    launch_programmatic(linear_swiglu_kernel<T, kTokens, 1>, grid, dim3(kThreads), 0, stream, a, x,
                        w, num_tokens, in_stride, inter, in_features);
  }
}

template <typename T>
void launch_swiglu(TensorView act, TensorView in, TensorView weight, cudaStream_t stream) {
  const bool vec = gemv_vectorizable<T>(in, weight);
  with_tile(in.size(0), [&](auto tile) {
    launch_swiglu_tile<T, decltype(tile)::value>(act, in, weight, vec, stream);
  });
}

// The QKV projection's epilogue for linear_qkv_append: q and k rotated (RoPE) and stored, k and
// v also appended to a cache of T or to an FP8 cache.
template <typename T>
struct QkvAppend {
  T* q;        // [num_tokens, num_heads * head_dim]
  T* k;        // [num_tokens, num_kv_heads * head_dim]
  T* v;        // [num_tokens, num_kv_heads * head_dim]
  T* k_cache;  // [num_pages, page_size, num_kv_heads, head_dim] (caches of T)
  T* v_cache;
  // FP8 caches: e4m3 codes [num_pages, page_size, num_kv_heads, head_dim] and row scales
  // [num_pages, num_kv_heads, page_size] f32; `counters` [num_tokens, num_kv_heads, 2 (k, v)]:
  // blocks of the row done, zero between launches (each launch leaves it zero).
  uint8_t* k_codes;
  uint8_t* v_codes;
  float* k_scale;
  float* v_scale;
  unsigned* counters;
  const float* inv_freq;  // [head_dim / 2], stride freq_stride
  int64_t freq_stride;
  int num_heads, num_kv_heads, head_dim;
  bool prefetch;    // stream_rows'
  AppendArgs plan;  // the slot of each token (token_words unused)
};

// What a thread of a QKV block needs from the plan for its epilogue: the cosine and sine of its
// rotate-half pair (threads below kPairs * kTokens of a pair block: pair j / kTokens, token
// j % kTokens) and the cache row of its token (threads below kTokens of a block that appends).
struct QkvPlanWords {
  float c = 0.0f, sn = 0.0f;
  int64_t slot = 0;
  // A word that depends on every one of them (for pdl_wait_after).
  __device__ __forceinline__ uint32_t dep() const {
    return __float_as_uint(c) ^ __float_as_uint(sn) ^ uint32_t(slot);
  }
};

template <typename T, int kPairs, int kTokens>
__device__ __forceinline__ QkvPlanWords qkv_plan_words(const QkvAppend<T>& e, bool pairs,
                                                       bool appends, int64_t pair0,
                                                       int64_t token0, int64_t num_tokens) {
  QkvPlanWords words;
  const int j = threadIdx.x;
  if (pairs && j < kPairs * kTokens && token0 + j % kTokens < num_tokens) {
    const int64_t token = token0 + j % kTokens;
    const int i = int(pair0 % (e.head_dim / 2)) + j / kTokens;
    rope_cos_sin(float(e.plan.positions[token * e.plan.pos_stride]), e.inv_freq[i * e.freq_stride],
                 &words.c, &words.sn);
  }
  if (appends && j < kTokens && token0 + j < num_tokens) {
    words.slot = append_slot(e.plan, token0 + j, /*reporter=*/true);
  }
  return words;
}

// A value another block of this grid stored (coherent: read at L2, past L1).
template <typename T>
__device__ __forceinline__ float load_cg(const T* p) {
  return to_float(__ldcg(p));
}

// FP8 caches: a (token, KV head) row of k or v is quantized whole (its amax sets its power-of-two
// scale, as in paged_kv_append), but each of the head's `blocks_per_head` blocks holds a slice of
// it. So each block, once its slice is stored in k / v, counts itself in on the row's counter, and
// the row's last block (the threadfence pattern of cooperative groups' grid sync) reads the whole
// row back from k / v, takes its amax with the reference's fmaxf reduction, and writes its codes
// and its scale. atomicInc wraps the counter back to zero for the next launch. Called by every
// thread of the block.
template <typename T, int kTokens, int kThreadsPerBlock>
__device__ __forceinline__ void append_fp8_slices(const QkvAppend<T>& e, bool is_v, int head,
                                                  int64_t token0, int64_t num_tokens,
                                                  int blocks_per_head, const int64_t* s_slot) {
  __shared__ bool s_last[kTokens];  // this block is the row's last (for token m)
  __shared__ float s_red[32];
  __syncthreads();  // the block's slice stored (and s_slot)
  if (threadIdx.x < kTokens) {
    const int m = threadIdx.x;
    const int64_t token = token0 + m;
    bool last = false;
    if (token < num_tokens) {
      unsigned* c = e.counters + (token * e.num_kv_heads + head) * 2 + (is_v ? 1 : 0);
      __threadfence();  // the block's stores (before the barrier) ahead of its count
      last = atomicInc(c, unsigned(blocks_per_head - 1)) == unsigned(blocks_per_head - 1);
      if (last) __threadfence();  // every block's slice seen after its count
    }
    s_last[m] = last;
  }
  __syncthreads();
  const int64_t kv_width = int64_t(e.num_kv_heads) * e.head_dim;
#pragma unroll 1
  for (int m = 0; m < kTokens; ++m) {
    if (!s_last[m]) continue;  // block-uniform
    const int64_t token = token0 + m;
    const T* src = (is_v ? e.v : e.k) + token * kv_width + int64_t(head) * e.head_dim;
    uint8_t* dst = (is_v ? e.v_codes : e.k_codes) + s_slot[m] * kv_width + int64_t(head) * e.head_dim;
    float amax = 0.0f;  // NaN skipped, as append_fp8_rows' warp_max of fmaxf
    for (int d = threadIdx.x; d < e.head_dim; d += kThreadsPerBlock) {
      amax = fmaxf(amax, fabsf(load_cg(src + d)));
    }
    const float scale = e4m3_row_scale(block_max(amax, s_red));
    for (int d = threadIdx.x; d < e.head_dim; d += kThreadsPerBlock) {
      dst[d] = f32_to_e4m3(load_cg(src + d) / scale);
    }
    if (threadIdx.x == 0) {
      const int64_t page = s_slot[m] / e.plan.page_size;
      (is_v ? e.v_scale : e.k_scale)[(page * e.num_kv_heads + head) * e.plan.page_size +
                                     s_slot[m] % e.plan.page_size] = scale;
    }
  }
}

// q, k, v = in @ weight^T, each sum rounded to T; q and k rotated at the token's position; k and
// v appended at its slot: what linear_split then paged_kv_append with RoPE compute. Two kinds of
// block, both kWarps warps of kRows rows:
// - pair blocks (q and k heads): kPairs = 2 kRows rotate-half pairs (i, i + head_dim / 2) of one
//   head, warps 0 and 1 the rows i, warps 2 and 3 the rows i + head_dim / 2; the rounded sums meet
//   in shared memory and one thread rotates each (pair, token): the pairs of a block never straddle
//   a head (the host checks (head_dim / 2) % kPairs == 0);
// - v blocks: kWarps kRows consecutive v rows, stored by the lane that holds each sum.
// Either way a head takes head_dim / (kWarps kRows) blocks, consecutive along x. kFp8: the cache
// is FP8, and each k or v head's blocks meet in append_fp8_slices, whose last one writes the row.
// No warp leaves early (the block syncs): rows past the end re-read the last one and are never
// stored. The rotation's angles and the slots are plan reads (qkv_plan_words), kept in shared
// memory for the epilogue (not in registers across the stream loop): with kEarly, before the
// wait, once the first weight loads are issued (the wait depends on them), so the epilogue after
// the stream loads nothing; they cost the grid's tail up to three dependent L2 round trips and the
// angle's double-precision sincos (the k blocks: the slot, then the position for the angle). Else
// after the stream (the kernel as before kEarly, for the A/B switch).
// in:     [num_tokens, in_features], row stride in_stride
// weight: [(num_heads + 2 num_kv_heads) * head_dim, in_features], contiguous
// Grid: x over the pair blocks, then the v blocks; y over tiles of kTokens tokens (kFp8: one).
template <typename T, int kTokens, int kVec, bool kFp8, bool kEarly>
__global__ void __launch_bounds__(kThreads)
    linear_qkv_append_kernel(const QkvAppend<T> e, const T* in, const T* __restrict__ weight,
                             int64_t num_tokens, int64_t in_stride, int64_t in_features) {
  constexpr int kRows = QkvConfig<kTokens>::kRows;
  constexpr int kPairs = 2 * kRows;
  static_assert(kWarps == 4, "two warps for each half of the pairs");
  __shared__ float s_sum[kWarps][kRows][kTokens];
  __shared__ int64_t s_slot[kTokens];
  // The plan words of the epilogue (qkv_plan_words), kept in shared memory rather than in
  // registers across the stream loop: thread j's cosine and sine.
  __shared__ float s_cs[kPairs * kTokens][2];
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int head_dim = e.head_dim, half = head_dim / 2;
  const int64_t kv_width = int64_t(e.num_kv_heads) * head_dim;
  const int64_t pair_blocks = int64_t(e.num_heads + e.num_kv_heads) * half / kPairs;
  const int64_t v_first = int64_t(e.num_heads + e.num_kv_heads) * head_dim;  // v's weight rows
  const bool pairs = blockIdx.x < pair_blocks;
  const int64_t token0 = int64_t(blockIdx.y) * kTokens;

  // Pair blocks: pair p is (head p / half, i = p % half); v blocks: v rows from v0.
  const int64_t pair0 = int64_t(blockIdx.x) * kPairs;
  const int head = int(pair0 / half);
  const int i0 = int(pair0 % half) + (warp & 1) * kRows;  // this warp's first pair in the head
  const int64_t v0 = (int64_t(blockIdx.x) - pair_blocks) * kWarps * kRows + warp * kRows;
  const T* w[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int64_t row = pairs ? int64_t(head) * head_dim + (warp >> 1) * half + i0 + r
                              : v_first + (v0 + r < kv_width ? v0 + r : kv_width - 1);
    w[r] = weight + row * in_features;
  }
  const T* x[kTokens];
  token_rows<T, kTokens>(x, in, token0, num_tokens, in_stride);
  const bool appends = !pairs || head >= e.num_heads;  // k or v: the block needs the slots
  static_assert(kPairs * kTokens <= kThreads, "a thread rotates one (pair, token)");
  const auto fetch = [&]() -> uint32_t {
    const QkvPlanWords words =
        qkv_plan_words<T, kPairs, kTokens>(e, pairs, appends, pair0, token0, num_tokens);
    if (threadIdx.x < kPairs * kTokens) {
      s_cs[threadIdx.x][0] = words.c;
      s_cs[threadIdx.x][1] = words.sn;
    }
    if (appends && threadIdx.x < kTokens) s_slot[threadIdx.x] = words.slot;
    return words.dep();
  };
  float acc[kRows][kTokens];
  if constexpr (kEarly) {
    stream_rows<T, kTokens, kVec, QkvConfig<kTokens>>(acc, w, x, in_features, e.prefetch,
                                                      fetch);
  } else {
    stream_rows<T, kTokens, kVec, QkvConfig<kTokens>>(acc, w, x, in_features, e.prefetch);
    fetch();
  }
  const int blocks_per_head = head_dim / (kWarps * kRows);
  if (!pairs) {
    __syncthreads();  // s_slot
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
#pragma unroll
      for (int m = 0; m < kTokens; ++m) {
        const float sum = warp_sum(acc[r][m]);
        const int64_t row = v0 + r, token = token0 + m;
        if (lane == r * kTokens + m && row < kv_width && token < num_tokens) {
          const T value = from_float<T>(sum);
          e.v[token * kv_width + row] = value;
          if constexpr (!kFp8) e.v_cache[s_slot[m] * kv_width + row] = value;
        }
      }
    }
    if constexpr (kFp8) {
      const int v_head = int(((int64_t(blockIdx.x) - pair_blocks) * kWarps * kRows) / head_dim);
      append_fp8_slices<T, kTokens, kThreads>(e, /*is_v=*/true, v_head, token0, num_tokens,
                                              blocks_per_head, s_slot);
    }
    return;
  }
  sums_to_shared<T, kRows, kTokens>(acc, s_sum);
  __syncthreads();  // s_sum, s_slot
  const int j = threadIdx.x;
  if (j < kPairs * kTokens && token0 + j % kTokens < num_tokens) {
    const int lp = j / kTokens, m = j % kTokens;  // the block's pair lp: first-half warp lp / kRows
    const int gw = lp / kRows, r = lp % kRows;
    const int i = int(pair0 % half) + lp;
    const int64_t token = token0 + m;
    float ra, rb;
    rotate_pair(s_sum[gw][r][m], s_sum[gw + 2][r][m], s_cs[j][0], s_cs[j][1], &ra, &rb);
    const T a = from_float<T>(ra), b = from_float<T>(rb);
    if (head < e.num_heads) {
      T* q = e.q + token * e.num_heads * head_dim + int64_t(head) * head_dim;
      q[i] = a;
      q[half + i] = b;
    } else {
      const int64_t at = int64_t(head - e.num_heads) * head_dim + i;
      T* k = e.k + token * kv_width + at;
      k[0] = a;
      k[half] = b;
      if constexpr (!kFp8) {
        T* kc = e.k_cache + s_slot[m] * kv_width + at;
        kc[0] = a;
        kc[half] = b;
      }
    }
  }
  if constexpr (kFp8) {
    if (head >= e.num_heads) {  // block-uniform
      append_fp8_slices<T, kTokens, kThreads>(e, /*is_v=*/false, head - e.num_heads, token0,
                                              num_tokens, blocks_per_head, s_slot);
    }
  }
}

template <typename T, int kTokens>
void launch_qkv_append_tile(const QkvAppend<T>& e, TensorView in, TensorView weight, bool vec,
                            bool early, cudaStream_t stream) {
  constexpr int kRows = QkvConfig<kTokens>::kRows;
  const int64_t num_tokens = in.size(0), in_features = in.size(1);
  const int64_t in_stride = num_tokens > 1 ? in.stride[0] : in_features;
  const int64_t pair_blocks =
      int64_t(e.num_heads + e.num_kv_heads) * (e.head_dim / 2) / (2 * kRows);
  const int64_t v_blocks = ceil_div<int64_t>(int64_t(e.num_kv_heads) * e.head_dim, kWarps * kRows);
  const dim3 grid(unsigned(pair_blocks + v_blocks),
                  unsigned(ceil_div<int64_t>(num_tokens, kTokens)));
  const T* x = static_cast<const T*>(in.data);
  const T* w = static_cast<const T*>(weight.data);
  auto run = [&](auto kernel) {
    launch_programmatic(kernel, grid, dim3(kThreads), 0, stream, e, x, w, num_tokens, in_stride,
                        in_features);
  };
  constexpr int kV = 16 / sizeof(T);
  // Early plan reads up to 4 tokens a tile: at 8 (64 threads' sincos beside the first weight
  // loads) ptxas gives the kernel 202 registers against 152 without them, a block fewer an SM.
  auto pick = [&](auto fp8) {
    constexpr bool kFp8 = decltype(fp8)::value;
    if constexpr (kTokens <= 4) {
      if (early) {
        vec ? run(linear_qkv_append_kernel<T, kTokens, kV, kFp8, true>)
            : run(linear_qkv_append_kernel<T, kTokens, 1, kFp8, true>);
        return;
      }
    }
    vec ? run(linear_qkv_append_kernel<T, kTokens, kV, kFp8, false>)
        : run(linear_qkv_append_kernel<T, kTokens, 1, kFp8, false>);
  };
  if (e.k_codes != nullptr) {
    pick(std::true_type{});
  } else {
    pick(std::false_type{});
  }
}

template <typename T>
void launch_qkv_append(const PagedKvAppendParams& p, TensorView in, TensorView weight,
                       cudaStream_t stream) {
  QkvAppend<T> e;
  e.q = static_cast<T*>(p.rope_q.data);
  e.k = static_cast<T*>(p.k.data);
  e.v = static_cast<T*>(p.v.data);
  const bool fp8 = p.k_cache.dtype == DType::kU8;
  e.k_cache = fp8 ? nullptr : static_cast<T*>(p.k_cache.data);
  e.v_cache = fp8 ? nullptr : static_cast<T*>(p.v_cache.data);
  e.k_codes = fp8 ? static_cast<uint8_t*>(p.k_cache.data) : nullptr;
  e.v_codes = fp8 ? static_cast<uint8_t*>(p.v_cache.data) : nullptr;
  e.k_scale = fp8 ? p.k_scale.data_as<float>() : nullptr;
  e.v_scale = fp8 ? p.v_scale.data_as<float>() : nullptr;
  e.counters = fp8 ? static_cast<unsigned*>(p.append_counters.data) : nullptr;
  e.inv_freq = p.rope_inv_freq.data_as<float>();
  e.freq_stride = p.rope_inv_freq.stride[0];
  e.num_heads = int(p.rope_q.size(1));
  e.num_kv_heads = int(p.k.size(1));
  e.head_dim = int(p.k.size(2));
  e.prefetch = gemv_prefetch();
  e.plan = make_append_args(p);
  // The plan (positions, sequence rows, block tables) and inv_freq are read before the wait when
  // PagedKvAppendParams::plan_complete says they predate it, else after it (the kernel's kEarly);
  // TIDAL_QKV_EARLY=0 reads them after the wait all the same (the A/B switch).
  static const bool early_reads = switch_on("TIDAL_QKV_EARLY");
  const bool early = p.plan_complete && early_reads;
  const bool vec = gemv_vectorizable<T>(in, weight);
  with_tile(in.size(0), [&](auto tile) {
    launch_qkv_append_tile<T, decltype(tile)::value>(e, in, weight, vec, early, stream);
  });
}

template <typename T, typename TOut>
void launch_typed(const TensorView* outs, int num_outs, TensorView in, TensorView weight,
                  cudaStream_t stream) {
  GemvOutputs<TOut> out;
  int64_t row = 0;
  for (int p = 0; p < kGemvMaxOutputs; ++p) {
    const bool used = p < num_outs;
    out.ptr[p] = used ? static_cast<TOut*>(outs[p].data) : nullptr;
    out.begin[p] = used ? row : INT64_MAX;
    out.width[p] = used ? outs[p].size(1) : 0;
    if (used) row += outs[p].size(1);
  }
  const bool vec = gemv_vectorizable<T>(in, weight);
  with_tile(in.size(0), [&](auto tile) {
    launch_tile<T, TOut, decltype(tile)::value>(out, in, weight, vec, stream);
  });
}

}  // namespace

void linear_swiglu_gemv(TensorView act, TensorView in, TensorView weight, cudaStream_t stream) {
  TIDAL_CHECK(ceil_div<int64_t>(in.size(0), 8) <= 65535 && act.size(1) < (int64_t(1) << 31),
              "linear_swiglu: shape too large for the GEMV grid");
  dispatch_float(in.dtype, "linear_swiglu",
                 [&](auto tag) { launch_swiglu<decltype(tag)>(act, in, weight, stream); });
}

void linear_qkv_append_gemv(const PagedKvAppendParams& p, TensorView in, TensorView weight,
                            cudaStream_t stream) {
  TIDAL_CHECK(ceil_div<int64_t>(in.size(0), 8) <= 65535 && weight.size(0) < (int64_t(1) << 31),
              "linear_qkv_append: shape too large for the GEMV grid");
  dispatch_float(in.dtype, "linear_qkv_append",
                 [&](auto tag) { launch_qkv_append<decltype(tag)>(p, in, weight, stream); });
}

void linear_gemv(const TensorView* outs, int num_outs, TensorView in, TensorView weight,
                 cudaStream_t stream) {
  TIDAL_CHECK(num_outs >= 1 && num_outs <= kGemvMaxOutputs, "linear: 1 to 3 outputs");
  TIDAL_CHECK(ceil_div<int64_t>(in.size(0), 8) <= 65535 &&
                  ceil_div<int64_t>(weight.size(0), kWarps) < (int64_t(1) << 31),
              "linear: shape too large for the GEMV grid");
  // out is the input's dtype, or f32 (logits from 16-bit weights).
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
