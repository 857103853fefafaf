// SPDX-License-Identifier: Apache-2.0
#include "kernels/block_table_update.h"

#include "kernels/dispatch.h"

namespace tidal::kernels {

void block_table_update(TensorView block_tables, TensorView updates,
                        [[maybe_unused]] Stream stream) {
  TIDAL_CHECK(block_tables.rank == 2 && block_tables.dtype == DType::kI32 &&
                  block_tables.is_contiguous(),
              "block_table_update: block_tables must be contiguous i32 [num_rows, max_pages]");
  TIDAL_CHECK(updates.rank == 2 && updates.size(1) == 3 && updates.dtype == DType::kI32 &&
                  updates.is_contiguous(),
              "block_table_update: updates must be contiguous i32 [max_updates, 3]");
  if (on_cuda("block_table_update", {block_tables, updates})) {
    TIDAL_CUDA_CALL("block_table_update", cuda::block_table_update(block_tables, updates, stream));
    return;
  }
  ref::block_table_update(block_tables, updates);
}

void ref::block_table_update(TensorView block_tables, TensorView updates) {
  const int32_t* u = updates.data_as<int32_t>();
  int32_t* table = block_tables.data_as<int32_t>();
  for (int64_t i = 0; i < updates.size(0); ++i) {
    const int32_t row = u[3 * i], index = u[3 * i + 1], page = u[3 * i + 2];
    if (row < 0) continue;
    TIDAL_CHECK(row < block_tables.size(0) && index >= 0 && index < block_tables.size(1),
                "block_table_update: entry outside the block tables");
    table[row * block_tables.size(1) + index] = page;
  }
}

}  // namespace tidal::kernels
