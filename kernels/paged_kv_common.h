// SPDX-License-Identifier: Apache-2.0
// Position -> (page, slot) arithmetic over a block table, shared by the paged ops' references.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/tensor.h"

namespace tidal::kernels {

struct PagedSlot {
  int64_t page;    // row of the cache
  int64_t offset;  // slot inside the page
};

struct PagedKv {
  TensorView k_cache;       // [num_pages, page_size, num_kv_heads, head_dim]
  TensorView v_cache;       // same
  TensorView block_tables;  // [num_seqs, max_pages] i32

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
};

inline void check_paged_kv(const TensorView& k_cache, const TensorView& v_cache,
                           const TensorView& block_tables, const char* op) {
  TIDAL_CHECK(k_cache.rank == 4 && same_shape(k_cache, v_cache),
              std::string(op) + ": caches must be [num_pages, page_size, num_kv_heads, head_dim]");
  TIDAL_CHECK(block_tables.rank == 2 && block_tables.dtype == DType::kI32,
              std::string(op) + ": block_tables must be i32 [num_seqs, max_pages]");
}

}  // namespace tidal::kernels
