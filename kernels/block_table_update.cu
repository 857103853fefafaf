// SPDX-License-Identifier: Apache-2.0
// block_table_update: one thread per (row, index, page) update entry; rows < 0 are unused slots of
// the fixed-size list and skipped. An entry outside the table is a bug in the step plan (ref::
// dies on it): print it and trap. Two entries for one (row, index) leave either page (ref:: keeps
// the last); the planner never emits such pairs.
#include "kernels/block_table_update.h"
#include "kernels/elementwise.cuh"

namespace tidal::kernels::cuda {

namespace {

constexpr int kThreads = 128;

// block_tables: [num_rows, max_pages] i32, contiguous
// updates:      [max_updates, 3] i32, contiguous
__global__ void block_table_update_kernel(int32_t* __restrict__ block_tables,
                                          const int32_t* __restrict__ updates, int64_t num_updates,
                                          int64_t num_rows, int64_t max_pages) {
  const int64_t u = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (u >= num_updates) return;
  const int32_t row = updates[3 * u], index = updates[3 * u + 1], page = updates[3 * u + 2];
  if (row < 0) return;
  if (row >= num_rows || index < 0 || index >= max_pages) {
    printf("tidal block_table_update: entry %lld (row %d, index %d) outside [%lld, %lld]\n",
           (long long)u, row, index, (long long)num_rows, (long long)max_pages);
    __trap();
  }
  block_tables[int64_t(row) * max_pages + index] = page;
}

}  // namespace

// block_tables: [num_rows, max_pages] i32 (updated); updates: [max_updates, 3] i32
void block_table_update(TensorView block_tables, TensorView updates, Stream stream) {
  TIDAL_NVTX_SCOPE("block_table_update");
  const int64_t n = updates.size(0);
  if (n == 0) return;
  block_table_update_kernel<<<unsigned(ceil_div<int64_t>(n, kThreads)), kThreads, 0,
                              raw_stream(stream)>>>(static_cast<int32_t*>(block_tables.data),
                                                    static_cast<const int32_t*>(updates.data), n,
                                                    block_tables.size(0), block_tables.size(1));
  check_launch("block_table_update_kernel", stream);
}

}  // namespace tidal::kernels::cuda
