// SPDX-License-Identifier: Apache-2.0
// Applies a step plan's block-table changes to the device copy of the block tables: the host
// hands a sequence its pages and the plan carries only the new (row, index, page) entries, so a
// step never copies whole tables. Fixed-size update lists (unused entries have row -1) keep the
// launch shape constant for CUDA graphs.
#pragma once

#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

// block_tables: [num_rows, max_pages] i32, updated
// updates:      [max_updates, 3] i32: (row, index, page); rows < 0 are skipped
// Requires: 0 <= row < num_rows, 0 <= index < max_pages for every used entry.
void block_table_update(TensorView block_tables, TensorView updates, Stream stream);

namespace ref {
void block_table_update(TensorView block_tables, TensorView updates);
}  // namespace ref

namespace cuda {
void block_table_update(TensorView block_tables, TensorView updates, Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
