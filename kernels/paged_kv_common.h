// SPDX-License-Identifier: Apache-2.0
// Position -> (page, slot) arithmetic over a block table, shared by the paged ops' references,
// and the KV caches' two formats:
// - the activation dtype (f32, f16, bf16): the caches hold K and V as computed;
// - FP8 e4m3 (kernels/fp8_e4m3.h): the caches are u8 tensors of e4m3 codes, with k_scale and
//   v_scale beside them, f32 [num_pages, num_kv_heads, page_size]: one power-of-two scale per
//   (token, KV head) row, K[p, s, h, :] = decode(codes) * k_scale[p, h, s]. A row's scale is a
//   function of the row alone, so every write is self-contained (no page-wide rescaling, no
//   order dependence between the tokens of a page, a chunked prefill and token-by-token decode
//   store the same bytes), at 4 bytes per head_dim-byte row (3% at head_dim 128). The scales of
//   one KV head's page are contiguous (64 bytes at page_size 16): a stream over a head's keys
//   reads them in whole sectors, where a [page, slot, head] layout would fetch a 32-byte sector
//   per key and tensor (up to 25% more DRAM traffic at head_dim 128; on the H200 the decode
//   kernel was bound elsewhere and timed the same with both, benchmarks/results/PERF_NOTES.md).
#pragma once

#include <cstdint>
#include <string>

#include "kernels/fp8_e4m3.h"
#include "runtime/tensor.h"
#include "runtime/tensor_access.h"

namespace tidal::kernels {

struct PagedSlot {
  int64_t page;    // row of the cache
  int64_t offset;  // slot inside the page
};

struct PagedKv {
  TensorView k_cache;       // [num_pages, page_size, num_kv_heads, head_dim]
  TensorView v_cache;       // same
  TensorView block_tables;  // [num_seqs, max_pages] i32
  TensorView k_scale = {};  // FP8 caches: [num_pages, num_kv_heads, page_size] f32; else empty
  TensorView v_scale = {};  // likewise

  PagedSlot slot(int64_t seq, int64_t position) const {
    const int64_t page_size = k_cache.size(1);
    TIDAL_CHECK(seq >= 0 && seq < block_tables.size(0), "paged kv: sequence row out of range");
    TIDAL_CHECK(position >= 0 && position / page_size < block_tables.size(1),
                "paged kv: position beyond the block table");
    const int32_t page =
        block_tables.data_as<int32_t>()[seq * block_tables.stride[0] +
                                        (position / page_size) * block_tables.stride[1]];
    TIDAL_CHECK(page >= 0 && page < k_cache.size(0), "paged kv: page id out of range");
    return PagedSlot{page, position % page_size};
  }

  // Row (slot, kv_head) of K or V as f32 (dequantized for FP8): a pointer into the cache for
  // f32, else `scratch` (>= head_dim floats).
  const float* k_row(PagedSlot s, int64_t kv_head, float* scratch) const {
    return row(k_cache, k_scale, s, kv_head, scratch);
  }
  const float* v_row(PagedSlot s, int64_t kv_head, float* scratch) const {
    return row(v_cache, v_scale, s, kv_head, scratch);
  }

 private:
  static const float* row(const TensorView& cache, const TensorView& scale, PagedSlot s,
                          int64_t kv_head, float* scratch) {
    const int64_t head_dim = cache.size(3);
    const int64_t at = offset_of(cache, s.page, s.offset, kv_head);
    if (cache.dtype != DType::kU8) return row_f32(cache, at, head_dim, scratch);
    dequantize_e4m3_row(cache.data_as<uint8_t>() + at,
                        scale.data_as<float>()[offset_of(scale, s.page, kv_head, s.offset)],
                        head_dim, scratch);
    return scratch;
  }
};

// Whether the caches are FP8 (u8 e4m3 codes with scales).
inline bool is_fp8_kv(const TensorView& k_cache) { return k_cache.dtype == DType::kU8; }

inline void check_paged_kv(const TensorView& k_cache, const TensorView& v_cache,
                           const TensorView& block_tables, const char* op) {
  TIDAL_CHECK(k_cache.rank == 4 && same_shape(k_cache, v_cache),
              std::string(op) + ": caches must be [num_pages, page_size, num_kv_heads, head_dim]");
  TIDAL_CHECK(block_tables.rank == 2 && block_tables.dtype == DType::kI32,
              std::string(op) + ": block_tables must be i32 [num_seqs, max_pages]");
}

// The caches' format against the activations' dtype `act`: the same dtype and no scales, or u8
// e4m3 codes with contiguous f32 scales [num_pages, num_kv_heads, page_size].
inline void check_kv_format(const TensorView& k_cache, const TensorView& v_cache,
                            const TensorView& k_scale, const TensorView& v_scale, DType act,
                            const char* op) {
  TIDAL_CHECK(v_cache.dtype == k_cache.dtype && k_cache.is_contiguous() && v_cache.is_contiguous(),
              std::string(op) + ": the caches share a dtype and are contiguous");
  if (!is_fp8_kv(k_cache)) {
    TIDAL_CHECK(k_cache.dtype == act && k_scale.data == nullptr && v_scale.data == nullptr,
                std::string(op) +
                    ": the caches hold the activations' dtype (and no scales), or "
                    "FP8 e4m3 codes (u8) with scales");
    return;
  }
  for (const TensorView* s : {&k_scale, &v_scale}) {
    TIDAL_CHECK(s->data != nullptr && s->rank == 3 && s->dtype == DType::kF32 &&
                    s->is_contiguous() && s->size(0) == k_cache.size(0) &&
                    s->size(1) == k_cache.size(2) && s->size(2) == k_cache.size(1),
                std::string(op) +
                    ": FP8 caches need contiguous f32 k_scale and v_scale "
                    "[num_pages, num_kv_heads, page_size]");
  }
}

}  // namespace tidal::kernels
