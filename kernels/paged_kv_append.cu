// SPDX-License-Identifier: Apache-2.0
// paged_kv_append: one block per token. A token's keys (all its KV heads) are one contiguous run
// of num_kv_heads * head_dim elements in k and in its cache slot, so the block copies that run for
// k and for v in 16-byte words (4- or 2-byte words when the run or a pointer is not 16-byte
// aligned). Cache offsets are int64: a cache holds well over 2^31 elements. A sequence row,
// position or page id outside the cache is a bug in the step plan (ref:: dies on it): the kernel
// prints it and traps instead of writing another sequence's pages.
// FP8 caches: one warp per (K or V, KV head) row quantizes it (the row's amax by a warp max, its
// power-of-two scale, then the codes), with the host reference's arithmetic (fp8_e4m3.cuh).
// With rope_q set, the same block first rotates the token's q and k heads (kernels/rotary.cuh),
// then appends the rotated k: one launch a layer instead of two. Shapes the fused kernels do not
// take (rows not 16-byte aligned) run rotary_embedding's kernel, then the append.
// Every kernel here is a programmatic dependent launch (kernels/pdl.cuh): scheduled while the QKV
// projection drains, it waits for it in the kernel (k, v and q are its output: read coherently).
#include "kernels/elementwise.cuh"
#include "kernels/fp8_e4m3.cuh"
#include "kernels/paged_kv_append.cuh"
#include "kernels/pdl.cuh"
#include "kernels/rotary.cuh"
#include "kernels/rotary_embedding.h"

namespace tidal::kernels::cuda {

namespace {

constexpr int kThreads = 128;

template <typename W>
__global__ void paged_kv_append_kernel(W* __restrict__ k_cache, W* __restrict__ v_cache, const W* k,
                                       const W* v, AppendArgs a) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t t = blockIdx.x;
  const int64_t slot = append_slot(a, t, threadIdx.x == 0);
  W* kd = k_cache + slot * a.token_words;
  W* vd = v_cache + slot * a.token_words;
  const W* ks = k + t * a.token_words;
  const W* vs = v + t * a.token_words;
  for (int64_t w = threadIdx.x; w < a.token_words; w += blockDim.x) {
    kd[w] = ks[w];
    vd[w] = vs[w];
  }
}

// Token t's K and V rows as FP8 into cache row `slot`, one warp per (K or V, KV head) row.
// k_cache, v_cache: [num_pages, page_size, num_kv_heads, head_dim] e4m3 codes; k_scale, v_scale:
// [num_pages, num_kv_heads, page_size] f32; k, v: [num_tokens, num_kv_heads, head_dim] of T (plain
// loads: the RoPE kernel wrote k in this launch).
template <typename T>
__device__ __forceinline__ void append_fp8_rows(uint8_t* k_cache, uint8_t* v_cache, float* k_scale,
                                                float* v_scale, const T* k, const T* v,
                                                const AppendArgs& a, int64_t t, int64_t slot,
                                                int num_kv_heads, int head_dim) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int r = warp; r < 2 * num_kv_heads; r += kThreads / 32) {  // warp-uniform
    const bool is_v = r >= num_kv_heads;
    const int h = is_v ? r - num_kv_heads : r;
    const T* src = (is_v ? v : k) + (t * num_kv_heads + h) * head_dim;
    uint8_t* dst = (is_v ? v_cache : k_cache) + (slot * num_kv_heads + h) * head_dim;
    float amax = 0.0f;
    for (int d = lane; d < head_dim; d += 32) amax = fmaxf(amax, fabsf(to_float(src[d])));
    const float scale = e4m3_row_scale(warp_max(amax));
    for (int d = lane; d < head_dim; d += 32) dst[d] = f32_to_e4m3(to_float(src[d]) / scale);
    if (lane == 0) {
      const int64_t page = slot / a.page_size, at = (page * num_kv_heads + h) * a.page_size;
      (is_v ? v_scale : k_scale)[at + slot - page * a.page_size] = scale;
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    paged_kv_append_fp8_kernel(uint8_t* __restrict__ k_cache, uint8_t* __restrict__ v_cache,
                               float* __restrict__ k_scale, float* __restrict__ v_scale, const T* k,
                               const T* v, AppendArgs a, int num_kv_heads, int head_dim) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t t = blockIdx.x;
  const int64_t slot = append_slot(a, t, threadIdx.x == 0);
  append_fp8_rows<T>(k_cache, v_cache, k_scale, v_scale, k, v, a, t, slot, num_kv_heads, head_dim);
}

// The RoPE inputs of a fused launch: q and k rotated in place (k is then appended).
struct RopeArgs {
  const float* inv_freq;
  int64_t freq_stride;
  int num_heads, num_kv_heads, head_dim;
};

// Token t's q and k heads rotated in place (dynamic shared memory: head_dim floats), then a
// barrier: the block's rotated k is visible to all its threads for the append.
template <typename T, int kVec>
__device__ __forceinline__ void rotate_for_append(T* q, T* k, const AppendArgs& a,
                                                  const RopeArgs& r, int64_t t) {
  extern __shared__ float cos_sin[];
  rotate_token<T, kVec>(q + t * r.num_heads * r.head_dim, k + t * r.num_kv_heads * r.head_dim,
                        float(a.positions[t * a.pos_stride]), r.inv_freq, r.freq_stride,
                        r.num_heads, r.num_kv_heads, r.head_dim, cos_sin);
  __syncthreads();
}

// RoPE, then the copy of k and v into a 16-bit / f32 cache in 16-byte words. One block a token.
template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads)
    rope_append_kernel(uint4* __restrict__ k_cache, uint4* __restrict__ v_cache, T* q, T* k,
                       const uint4* v, AppendArgs a, RopeArgs r) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t t = blockIdx.x;
  const int64_t slot = append_slot(a, t, threadIdx.x == 0);
  rotate_for_append<T, kVec>(q, k, a, r, t);
  uint4* kd = k_cache + slot * a.token_words;
  uint4* vd = v_cache + slot * a.token_words;
  const uint4* ks = reinterpret_cast<const uint4*>(k) + t * a.token_words;
  const uint4* vs = v + t * a.token_words;
  for (int64_t w = threadIdx.x; w < a.token_words; w += blockDim.x) {
    kd[w] = ks[w];
    vd[w] = vs[w];
  }
}

// RoPE, then the FP8 rows.
template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads)
    rope_append_fp8_kernel(uint8_t* __restrict__ k_cache, uint8_t* __restrict__ v_cache,
                           float* __restrict__ k_scale, float* __restrict__ v_scale, T* q, T* k,
                           const T* v, AppendArgs a, RopeArgs r) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t t = blockIdx.x;
  const int64_t slot = append_slot(a, t, threadIdx.x == 0);
  rotate_for_append<T, kVec>(q, k, a, r, t);
  append_fp8_rows<T>(k_cache, v_cache, k_scale, v_scale, k, v, a, t, slot, r.num_kv_heads,
                     r.head_dim);
}

// The fused launch when the shapes allow it (16-byte rotation vectors; for 16-bit / f32 caches,
// 16-byte copy words); false: the caller rotates and appends in two launches.
template <typename T>
bool launch_rope_append(const PagedKvAppendParams& p, AppendArgs a, int64_t token_bytes,
                        cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const int head_dim = int(p.k.size(2));
  const bool fp8 = p.k_cache.dtype == DType::kU8;
  if ((head_dim / 2) % kVec != 0 || !aligned_to(p.rope_q.data, 16) || !aligned_to(p.k.data, 16))
    return false;
  if (!fp8 && copy_word_bytes(token_bytes, {},
                              {p.k_cache.data, p.v_cache.data, p.k.data, p.v.data}) != 16) {
    return false;
  }
  const RopeArgs r{p.rope_inv_freq.data_as<float>(), p.rope_inv_freq.stride[0],
                   int(p.rope_q.size(1)), int(p.k.size(1)), head_dim};
  const unsigned grid = unsigned(p.k.size(0));
  const size_t smem = size_t(head_dim) * sizeof(float);
  T* q = static_cast<T*>(p.rope_q.data);
  T* k = static_cast<T*>(p.k.data);
  if (fp8) {
    launch_programmatic(rope_append_fp8_kernel<T, kVec>, dim3(grid), dim3(kThreads), smem, stream,
                        static_cast<uint8_t*>(p.k_cache.data),
                        static_cast<uint8_t*>(p.v_cache.data), p.k_scale.data_as<float>(),
                        p.v_scale.data_as<float>(), q, k, static_cast<const T*>(p.v.data), a, r);
  } else {
    a.token_words = token_bytes / 16;
    launch_programmatic(rope_append_kernel<T, kVec>, dim3(grid), dim3(kThreads), smem, stream,
                        static_cast<uint4*>(p.k_cache.data), static_cast<uint4*>(p.v_cache.data), q,
                        k, static_cast<const uint4*>(p.v.data), a, r);
  }
  return true;
}

template <int kWordBytes>
void launch(const PagedKvAppendParams& p, AppendArgs a, int64_t token_bytes, cudaStream_t stream) {
  using W = typename CopyWord<kWordBytes>::type;
  a.token_words = token_bytes / kWordBytes;
  launch_programmatic(paged_kv_append_kernel<W>, dim3(unsigned(p.k.size(0))), dim3(kThreads), 0,
                      stream, static_cast<W*>(p.k_cache.data), static_cast<W*>(p.v_cache.data),
                      static_cast<const W*>(p.k.data), static_cast<const W*>(p.v.data), a);
}

}  // namespace

// k_cache, v_cache: [num_pages, page_size, num_kv_heads, head_dim]; block_tables: [num_rows,
// max_pages] i32; seq_ids, positions: [num_tokens] i32; k, v: [num_tokens, num_kv_heads, head_dim]
void paged_kv_append(const PagedKvAppendParams& p, Stream stream) {
  TIDAL_NVTX_SCOPE("paged_kv_append");
  const int64_t num_tokens = p.k.size(0);
  const int64_t token_bytes = p.k.size(1) * p.k.size(2) * int64_t(dtype_size(p.k.dtype));
  if (num_tokens == 0 || token_bytes == 0) return;
  TIDAL_CHECK(num_tokens < (int64_t(1) << 31), "paged_kv_append: more tokens than a grid holds");
  TIDAL_CHECK(p.k_cache.size(1) > 0, "paged_kv_append: page_size must be positive");
  AppendArgs a = make_append_args(p);
  const cudaStream_t s = raw_stream(stream);
  if (p.rope_q.data != nullptr) {
    TIDAL_CHECK(p.k.size(2) * int64_t(sizeof(float)) <= 48 * 1024,
                "paged_kv_append: head_dim too large for RoPE");
    bool fused = false;
    dispatch_float(p.k.dtype, "paged_kv_append", [&](auto tag) {
      fused = launch_rope_append<decltype(tag)>(p, a, token_bytes, s);
    });
    if (fused) {
      check_launch("rope_append_kernel", stream);
      return;
    }
    rotary_embedding(p.rope_q, p.k, p.positions, p.rope_inv_freq, stream);
  }
  if (p.k_cache.dtype == DType::kU8) {  // FP8 e4m3 codes with per-row scales
    dispatch_float(p.k.dtype, "paged_kv_append", [&](auto tag) {
      using T = decltype(tag);
      launch_programmatic(paged_kv_append_fp8_kernel<T>, dim3(unsigned(num_tokens)), dim3(kThreads),
                          0, s, static_cast<uint8_t*>(p.k_cache.data),
                          static_cast<uint8_t*>(p.v_cache.data), p.k_scale.data_as<float>(),
                          p.v_scale.data_as<float>(), static_cast<const T*>(p.k.data),
                          static_cast<const T*>(p.v.data), a, int(p.k.size(1)), int(p.k.size(2)));
    });
    check_launch("paged_kv_append_fp8_kernel", stream);
    return;
  }
  switch (copy_word_bytes(token_bytes, {}, {p.k_cache.data, p.v_cache.data, p.k.data, p.v.data})) {
    case 16: launch<16>(p, a, token_bytes, s); break;
    case 4: launch<4>(p, a, token_bytes, s); break;
    case 2: launch<2>(p, a, token_bytes, s); break;
    default: launch<1>(p, a, token_bytes, s); break;
  }
  check_launch("paged_kv_append_kernel", stream);
}

}  // namespace tidal::kernels::cuda
