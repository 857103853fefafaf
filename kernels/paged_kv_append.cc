// SPDX-License-Identifier: Apache-2.0
#include "kernels/paged_kv_append.h"

#include "kernels/dispatch.h"
#include "kernels/paged_kv_common.h"
#include "runtime/tensor_access.h"

namespace tidal::kernels {

void paged_kv_append(TensorView k_cache, TensorView v_cache, TensorView block_tables,
                     TensorView seq_ids, TensorView positions, TensorView k, TensorView v) {
  check_paged_kv(k_cache, v_cache, block_tables, "paged_kv_append");
  TIDAL_CHECK(k.rank == 3 && same_shape(k, v) && k.size(1) == k_cache.size(2) &&
                  k.size(2) == k_cache.size(3),
              "paged_kv_append: k and v must be [num_tokens, num_kv_heads, head_dim]");
  TIDAL_CHECK(seq_ids.rank == 1 && positions.rank == 1 && seq_ids.size(0) == k.size(0) &&
                  positions.size(0) == k.size(0) && seq_ids.dtype == DType::kI32 &&
                  positions.dtype == DType::kI32,
              "paged_kv_append: seq_ids and positions must be i32 [num_tokens]");
  require_cpu("paged_kv_append", {k_cache, v_cache, block_tables, seq_ids, positions, k, v});
  ref::paged_kv_append(k_cache, v_cache, block_tables, seq_ids, positions, k, v);
}

void ref::paged_kv_append(TensorView k_cache, TensorView v_cache, TensorView block_tables,
                          TensorView seq_ids, TensorView positions, TensorView k, TensorView v) {
  const PagedKv kv{k_cache, v_cache, block_tables};
  for (int64_t t = 0; t < k.size(0); ++t) {
    const int32_t seq = seq_ids.data_as<int32_t>()[t * seq_ids.stride[0]];
    const int32_t pos = positions.data_as<int32_t>()[t * positions.stride[0]];
    const PagedSlot slot = kv.slot(seq, pos);
    for (int64_t h = 0; h < k.size(1); ++h) {
      for (int64_t d = 0; d < k.size(2); ++d) {
        set_f32(k_cache, slot.page, slot.offset, h, d, get_f32(k, t, h, d));
        set_f32(v_cache, slot.page, slot.offset, h, d, get_f32(v, t, h, d));
      }
    }
  }
}

}  // namespace tidal::kernels
