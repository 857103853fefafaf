// SPDX-License-Identifier: Apache-2.0
#include "kernels/paged_kv_append.h"

#include <tuple>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/paged_kv_common.h"
#include "kernels/rotary_embedding.h"
#include "runtime/tensor_access.h"

namespace tidal::kernels {

void check_paged_kv_append(const PagedKvAppendParams& p) {
  check_paged_kv(p.k_cache, p.v_cache, p.block_tables, "paged_kv_append");
  TIDAL_CHECK(p.k.rank == 3 && same_shape(p.k, p.v) && p.k.size(1) == p.k_cache.size(2) &&
                  p.k.size(2) == p.k_cache.size(3),
              "paged_kv_append: k and v must be [num_tokens, num_kv_heads, head_dim]");
  TIDAL_CHECK(p.seq_ids.rank == 1 && p.positions.rank == 1 && p.seq_ids.size(0) == p.k.size(0) &&
                  p.positions.size(0) == p.k.size(0) && p.seq_ids.dtype == DType::kI32 &&
                  p.positions.dtype == DType::kI32,
              "paged_kv_append: seq_ids and positions must be i32 [num_tokens]");
  TIDAL_CHECK(p.v.dtype == p.k.dtype && p.k.is_contiguous() && p.v.is_contiguous(),
              "paged_kv_append: k and v share a dtype and are contiguous");
  check_kv_format(p.k_cache, p.v_cache, p.k_scale, p.v_scale, p.k.dtype, "paged_kv_append");
  if (p.rope_q.data != nullptr) {
    TIDAL_CHECK(p.rope_q.rank == 3 && p.rope_q.size(0) == p.k.size(0) &&
                    p.rope_q.size(2) == p.k.size(2) && p.rope_q.dtype == p.k.dtype &&
                    p.rope_q.is_contiguous() && p.rope_inv_freq.rank == 1 &&
                    p.rope_inv_freq.dtype == DType::kF32 &&
                    p.rope_inv_freq.size(0) == p.k.size(2) / 2 && p.k.size(2) % 2 == 0,
                "paged_kv_append: rope_q must be [num_tokens, num_heads, head_dim] of k's dtype "
                "and rope_inv_freq f32 [head_dim / 2]");
  }
}

void paged_kv_append(const PagedKvAppendParams& p, [[maybe_unused]] Stream stream) {
  check_paged_kv_append(p);
  const bool rope = p.rope_q.data != nullptr;
  if (on_cuda("paged_kv_append", {p.k_cache, p.v_cache, p.block_tables, p.seq_ids, p.positions, p.k,
                                  p.v, p.rope_q, p.rope_inv_freq})) {
    TIDAL_CUDA_CALL("paged_kv_append", cuda::paged_kv_append(p, stream));
    return;
  }
  if (rope) rotary_embedding(p.rope_q, p.k, p.positions, p.rope_inv_freq, stream);
  ref::paged_kv_append(p);
}

void quantize_kv_cache(const TensorView& cache, TensorView codes, TensorView scales) {
  TIDAL_CHECK(cache.rank == 4 && cache.is_contiguous() && same_shape(cache, codes) &&
                  codes.dtype == DType::kU8 && codes.is_contiguous(),
              "quantize_kv_cache: codes must be contiguous u8 of the cache's shape");
  const int64_t pages = cache.size(0), page_size = cache.size(1), heads = cache.size(2),
                dim = cache.size(3);
  TIDAL_CHECK(scales.rank == 3 && scales.dtype == DType::kF32 && scales.is_contiguous() &&
                  scales.size(0) == pages && scales.size(1) == heads && scales.size(2) == page_size,
              "quantize_kv_cache: scales must be contiguous f32 [num_pages, num_kv_heads, "
              "page_size]");
  std::vector<float> row(static_cast<size_t>(dim));
  for (int64_t r = 0; r < pages * page_size * heads; ++r) {
    for (int64_t d = 0; d < dim; ++d) {
      row[size_t(d)] = load_f32(cache.data, cache.dtype, r * dim + d);
    }
    const int64_t page = r / (page_size * heads), slot = r / heads % page_size;
    scales.data_as<float>()[(page * heads + r % heads) * page_size + slot] =
        quantize_e4m3_row(row.data(), dim, codes.data_as<uint8_t>() + r * dim);
  }
}

void ref::paged_kv_append(const PagedKvAppendParams& p) {
  const PagedKv kv{p.k_cache, p.v_cache, p.block_tables, p.k_scale, p.v_scale};
  for (int64_t t = 0; t < p.k.size(0); ++t) {
    const int32_t seq = p.seq_ids.data_as<int32_t>()[t * p.seq_ids.stride[0]];
    const int32_t pos = p.positions.data_as<int32_t>()[t * p.positions.stride[0]];
    const PagedSlot slot = kv.slot(seq, pos);
    if (is_fp8_kv(p.k_cache)) {
      const int64_t head_dim = p.k.size(2);
      std::vector<float> row(static_cast<size_t>(head_dim));
      for (int64_t h = 0; h < p.k.size(1); ++h) {
        for (auto [src, cache, scale] :
             {std::tuple{&p.k, &p.k_cache, &p.k_scale}, std::tuple{&p.v, &p.v_cache, &p.v_scale}}) {
          for (int64_t d = 0; d < head_dim; ++d) row[size_t(d)] = get_f32(*src, t, h, d);
          const int64_t at = offset_of(*cache, slot.page, slot.offset, h);
          scale->data_as<float>()[offset_of(*scale, slot.page, h, slot.offset)] =
              quantize_e4m3_row(row.data(), head_dim, cache->data_as<uint8_t>() + at);
        }
      }
      continue;
    }
    for (int64_t h = 0; h < p.k.size(1); ++h) {
      for (int64_t d = 0; d < p.k.size(2); ++d) {
        set_f32(p.k_cache, slot.page, slot.offset, h, d, get_f32(p.k, t, h, d));
        set_f32(p.v_cache, slot.page, slot.offset, h, d, get_f32(p.v, t, h, d));
      }
    }
  }
}

}  // namespace tidal::kernels
