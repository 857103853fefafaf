// SPDX-License-Identifier: Apache-2.0
// prefill_attention on the GPU. bf16/f16 at head_dim 64 or 128 (16-byte aligned tensors) run the
// tensor-core FlashAttention-2 kernel of prefill_attention_mma.cuh; everything else (f32, small or
// odd head_dims) runs the SIMT kernel below: correct at any context, in bounded memory, but slow
// (it exists for exactness tests on tiny models, e.g. stories260K at head_dim 8). FP8 caches (e4m3
// codes with a scale per row) take the same two kernels: the tensor-core one dequantizes each
// tile into shared memory (exact in bf16).
#include <climits>
#include <cmath>
#include <type_traits>

#include "kernels/cuda_common.cuh"
#include "kernels/fp8_e4m3.cuh"
#include "kernels/paged_kv_common.h"
#include "kernels/prefill_attention.h"
#include "kernels/prefill_attention_mma.cuh"

namespace tidal::kernels::cuda {
namespace {

using prefill::Args;

constexpr int kSimtWarps = 4;     // one query row per warp, 4 rows of one head per block
constexpr int kSimtMaxDim = 256;  // per-lane accumulators: kSimtMaxDim / 32 dims per lane

// Grid: (ceil(max_query_len / kSimtWarps), num_seqs, num_heads); block 32 * kSimtWarps.
// Keys go in chunks of 32, one per lane: each lane scores its key (whole dot product), the warp
// updates the online softmax (fp32, natural exp as the ref), then the lanes split the head dims
// and accumulate the chunk's P V with the weights and row offsets broadcast by shuffles.
// Element d of cache row `off` (an element offset, a multiple of head_dim) as f32: FP8 codes times
// the row's scale (passed in), else the cache's value.
template <bool kFp8, typename T>
__device__ __forceinline__ float cache_at(const T* cache, const uint8_t* codes, int64_t off, int d,
                                          float row_scale) {
  if constexpr (kFp8) {
    return e4m3_to_f32(codes[off + d]) * row_scale;
  } else {
    return to_float(cache[off + d]);
  }
}

// The scale of the cache row at element offset `off` (FP8 scales: [num_pages, num_kv_heads,
// page_size]).
template <typename T>
__device__ __forceinline__ int64_t scale_index(const Args<T>& a, int64_t off, int kvh) {
  const int64_t row = off / (int64_t(a.num_kv_heads) * a.head_dim);  // page * page_size + slot
  const int64_t page = row / a.page_size;
  return (page * a.num_kv_heads + kvh) * a.page_size + (row - page * a.page_size);
}

template <typename T, bool kFp8>
__global__ void __launch_bounds__(32 * kSimtWarps) prefill_attention_simt_kernel(const Args<T> a) {
  __shared__ float sq[kSimtWarps][kSimtMaxDim];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int seq = blockIdx.y, head = blockIdx.z, dim = a.head_dim;
  const int q_begin = a.query_starts[seq], q_count = a.query_starts[seq + 1] - q_begin;
  const int qi = blockIdx.x * kSimtWarps + warp;
  if (qi >= q_count) return;                           // warp-uniform; no block barrier follows
  const int pos = a.context_lens[seq] - q_count + qi;  // sees keys 0 .. pos
  const int kvh = head / a.group;
  const int64_t row = (int64_t(q_begin + qi) * a.num_heads + head) * dim;
  const int32_t* bt = a.block_tables + int64_t(a.seq_ids[seq]) * a.bt_stride0;
  for (int d = lane; d < dim; d += 32) sq[warp][d] = to_float(a.q[row + d]);
  __syncwarp();

  float acc[kSimtMaxDim / 32] = {};
  float m_run = -INFINITY, l_run = 0.0f;
  for (int chunk = 0; chunk <= pos; chunk += 32) {
    const int key = chunk + lane;
    int64_t off = -1;
    float s = -INFINITY;
    if (key <= pos) {
      const int slot = key / a.page_size;
      const int page = slot < a.max_pages ? bt[slot * a.bt_stride1] : -1;
      off = prefill::kv_row_offset(page, key, a.page_size, a.num_pages, a.num_kv_heads, kvh, dim);
    }
    if (off >= 0) {
      const float ks = kFp8 ? a.k_scale[scale_index(a, off, kvh)] : 1.0f;
      float dot = 0.0f;
      for (int d = 0; d < dim; ++d) {
        dot += sq[warp][d] * cache_at<kFp8>(a.k_cache, a.k_codes, off, d, ks);
      }
      s = dot * a.scale;
    }
    const float m_new = fmaxf(m_run, warp_max(s));
    const float base = m_new == -INFINITY ? 0.0f : m_new;
    const float alpha = expf(m_run - base);
    const float p = off >= 0 ? expf(s - base) : 0.0f;
    l_run = l_run * alpha + warp_sum(p);
    m_run = m_new;
#pragma unroll
    for (int i = 0; i < kSimtMaxDim / 32; ++i) acc[i] *= alpha;
    const int n = min(32, pos - chunk + 1);
    for (int k = 0; k < n; ++k) {
      const float pk = __shfl_sync(0xffffffffu, p, k);
      const long long ok = __shfl_sync(0xffffffffu, static_cast<long long>(off), k);
      if (ok < 0) continue;  // warp-uniform
      const float vs = kFp8 ? a.v_scale[scale_index(a, ok, kvh)] : 1.0f;
#pragma unroll
      for (int i = 0; i < kSimtMaxDim / 32; ++i) {
        const int d = lane + 32 * i;
        if (d < dim) acc[i] += pk * cache_at<kFp8>(a.v_cache, a.v_codes, ok, d, vs);
      }
    }
  }
  const float inv = l_run > 0.0f ? 1.0f / l_run : 0.0f;
#pragma unroll
  for (int i = 0; i < kSimtMaxDim / 32; ++i) {
    const int d = lane + 32 * i;
    if (d < dim) a.out[row + d] = from_float<T>(acc[i] * inv);
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename T, int D, bool kFp8>
void launch_mma(const Args<T>& a, int64_t max_query_len, int num_seqs, cudaStream_t stream) {
  using C = prefill::MmaTile<D>;
  const int64_t blocks = ceil_div(max_query_len * a.group, int64_t(C::kBlockM));
  TIDAL_CHECK(blocks <= INT_MAX, "prefill_attention: max_query_len too large");
  const auto kernel = prefill::prefill_attention_mma_kernel<T, D, kFp8>;
  // Over 48 KiB of dynamic shared memory needs the opt-in (per device; cheap to repeat).
  TIDAL_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmemBytes));
  const dim3 grid{unsigned(blocks), unsigned(num_seqs), unsigned(a.num_kv_heads)};
  kernel<<<grid, C::kThreads, C::kSmemBytes, stream>>>(a);
}

template <typename T>
void launch(const PrefillAttentionParams& p, Stream stream) {
  const int64_t num_seqs = p.query_starts.size(0) - 1, dim = p.q.size(2);
  const int64_t heads = p.q.size(1), kv_heads = p.k_cache.size(2);
  if (p.q.size(0) == 0) return;  // no queries: nothing to write
  TIDAL_CHECK(num_seqs <= 65535 && heads <= 65535,
              "prefill_attention: at most 65535 sequences and heads per launch");
  TIDAL_CHECK(p.k_cache.size(0) <= INT_MAX && p.k_cache.size(1) <= INT_MAX &&
                  p.block_tables.size(1) <= INT_MAX,
              "prefill_attention: sizes past the int32 range");
  Args<T> a;
  // The dtype switch below and the .cc checks make T the dtype of all four (data_as<T> has no
  // __half / __nv_bfloat16 overload: those are CUDA-only types).
  a.out = static_cast<T*>(p.out.data);
  a.q = static_cast<const T*>(p.q.data);
  const bool fp8 = is_fp8_kv(p.k_cache);
  a.k_cache = fp8 ? nullptr : static_cast<const T*>(p.k_cache.data);
  a.v_cache = fp8 ? nullptr : static_cast<const T*>(p.v_cache.data);
  if (fp8) {
    a.k_codes = p.k_cache.data_as<uint8_t>();
    a.v_codes = p.v_cache.data_as<uint8_t>();
    a.k_scale = p.k_scale.data_as<float>();
    a.v_scale = p.v_scale.data_as<float>();
  }
  a.block_tables = p.block_tables.data_as<int32_t>();
  a.query_starts = p.query_starts.data_as<int32_t>();
  a.seq_ids = p.seq_ids.data_as<int32_t>();
  a.context_lens = p.context_lens.data_as<int32_t>();
  a.bt_stride0 = p.block_tables.stride[0];
  a.bt_stride1 = p.block_tables.stride[1];
  a.max_pages = int(p.block_tables.size(1));
  a.num_pages = int(p.k_cache.size(0));
  a.page_size = int(p.k_cache.size(1));
  a.num_heads = int(heads);
  a.num_kv_heads = int(kv_heads);
  a.group = int(heads / kv_heads);
  a.head_dim = int(dim);
  a.scale = p.scale > 0 ? p.scale : float(1.0 / std::sqrt(double(dim)));
  const cudaStream_t s = raw_stream(stream);

  TIDAL_NVTX_SCOPE("prefill_attention");
  if constexpr (!std::is_same_v<T, float>) {
    const bool aligned = aligned16(a.out) && aligned16(a.q) &&
                         (fp8 ? aligned16(a.k_codes) && aligned16(a.v_codes)
                              : aligned16(a.k_cache) && aligned16(a.v_cache));
    if (aligned && (dim == 64 || dim == 128)) {
      if (fp8) {
        if (dim == 64) launch_mma<T, 64, true>(a, p.max_query_len, int(num_seqs), s);
        if (dim == 128) launch_mma<T, 128, true>(a, p.max_query_len, int(num_seqs), s);
      } else {
        if (dim == 64) launch_mma<T, 64, false>(a, p.max_query_len, int(num_seqs), s);
        if (dim == 128) launch_mma<T, 128, false>(a, p.max_query_len, int(num_seqs), s);
      }
      check_launch("prefill_attention_mma_kernel", stream);
      return;
    }
  }
  TIDAL_CHECK(dim <= kSimtMaxDim, "prefill_attention: head_dim above 256 is not supported");
  const int64_t blocks = ceil_div(p.max_query_len, int64_t(kSimtWarps));
  TIDAL_CHECK(blocks <= INT_MAX, "prefill_attention: max_query_len too large");
  const dim3 grid{unsigned(blocks), unsigned(num_seqs), unsigned(heads)};
  if (fp8) {
    prefill_attention_simt_kernel<T, true><<<grid, 32 * kSimtWarps, 0, s>>>(a);
  } else {
    prefill_attention_simt_kernel<T, false><<<grid, 32 * kSimtWarps, 0, s>>>(a);
  }
  check_launch("prefill_attention_simt_kernel", stream);
}

}  // namespace

void prefill_attention(const PrefillAttentionParams& p, Stream stream) {
  switch (p.q.dtype) {
    case DType::kF32: launch<float>(p, stream); break;
    case DType::kF16: launch<__half>(p, stream); break;
    case DType::kBF16: launch<__nv_bfloat16>(p, stream); break;
    default: TIDAL_CHECK(false, "prefill_attention: unsupported dtype");
  }
}

}  // namespace tidal::kernels::cuda
