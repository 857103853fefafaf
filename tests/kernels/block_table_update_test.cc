// SPDX-License-Identifier: Apache-2.0
#include "kernels/block_table_update.h"

#include <vector>

#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

TEST(BlockTableUpdateRef, WritesEntriesAndSkipsUnusedRows) {
  int32_t table[6] = {-1, -1, -1, -1, -1, -1};  // [2, 3]
  // (row, index, page); the row -1 entry is an unused slot of the fixed-size list and must not
  // touch anything even though its index and page are garbage.
  int32_t updates[9] = {0, 1, 7, -1, 5, 9, 1, 2, 4};
  block_table_update(make_view(table, DType::kI32, {2, 3}), make_view(updates, DType::kI32, {3, 3}),
                     Stream{});
  EXPECT_EQ(std::vector<int32_t>(table, table + 6), (std::vector<int32_t>{-1, 7, -1, -1, -1, 4}));
}

TEST(BlockTableUpdateRef, LaterEntryForTheSameSlotWins) {
  int32_t table[2] = {0, 0};
  int32_t updates[6] = {0, 1, 3, 0, 1, 5};
  block_table_update(make_view(table, DType::kI32, {1, 2}), make_view(updates, DType::kI32, {2, 3}),
                     Stream{});
  EXPECT_EQ(table[1], 5);
}

TEST(BlockTableUpdateRef, EntryOutsideTheTableIsABug) {
  int32_t table[6] = {};
  int32_t row_too_big[3] = {2, 0, 1};
  EXPECT_DEATH(block_table_update(make_view(table, DType::kI32, {2, 3}),
                                  make_view(row_too_big, DType::kI32, {1, 3}), Stream{}),
               "outside the block tables");
  int32_t index_too_big[3] = {1, 3, 1};
  EXPECT_DEATH(block_table_update(make_view(table, DType::kI32, {2, 3}),
                                  make_view(index_too_big, DType::kI32, {1, 3}), Stream{}),
               "outside the block tables");
  int32_t index_negative[3] = {1, -1, 1};
  EXPECT_DEATH(block_table_update(make_view(table, DType::kI32, {2, 3}),
                                  make_view(index_negative, DType::kI32, {1, 3}), Stream{}),
               "outside the block tables");
}

}  // namespace
}  // namespace tidal::kernels
