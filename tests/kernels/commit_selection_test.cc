// SPDX-License-Identifier: Apache-2.0
#include "kernels/commit_selection.h"

#include <cstdint>
#include <vector>

#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

// Three tokens, max_lists 2, budget 4; two counter rows.
//   token 0 (kReselect, seq 1, L = 2): old lists {1, 3, 5} and {0, 2}; new {3, 5, 6, 9} and
//     {2, 7}: kept 2 + 1 of 3 + 2 -> overlap[1] += (3, 5); both lists and counts replaced.
//   token 1 (kSelect, seq 1, L = 1): list 0 replaced, no overlap counted; list 1 untouched.
//   token 2 (kSparse): nothing changes.
struct Fixture {
  std::vector<int32_t> lists = {1, 3, 5,  -1, 0, 2, -1, -1,  //
                                4, 8, -1, -1, 6, 6, 6,  6,   //
                                1, 2, 3,  4,  5, 6, 7,  8};
  std::vector<int32_t> counts = {3, 2, 2, 4, 4, 4};
  std::vector<int32_t> new_lists = {3, 5, 6, 9,  2, 7, -5, -5,  //
                                    0, 4, 9, 11, 9, 9, 9,  9,   //
                                    9, 9, 9, 9,  9, 9, 9,  9};
  std::vector<int32_t> new_counts = {4, 2, 4, 1, 1, 1};
  std::vector<int32_t> num_lists = {2, 1, 2};
  std::vector<uint8_t> roles = {uint8_t(TokenRole::kReselect), uint8_t(TokenRole::kSelect),
                                uint8_t(TokenRole::kSparse)};
  std::vector<int32_t> seq_ids = {1, 1, 0};
  std::vector<int64_t> overlap = {10, 20, 30, 40};

  CommitSelectionParams params() {
    CommitSelectionParams p;
    p.lists = make_view(lists.data(), DType::kI32, {3, 2, 4});
    p.counts = make_view(counts.data(), DType::kI32, {3, 2});
    p.new_lists = make_view(new_lists.data(), DType::kI32, {3, 2, 4});
    p.new_counts = make_view(new_counts.data(), DType::kI32, {3, 2});
    p.num_lists = make_view(num_lists.data(), DType::kI32, {3});
    p.roles = make_view(roles.data(), DType::kU8, {3});
    p.seq_ids = make_view(seq_ids.data(), DType::kI32, {3});
    p.overlap = make_view(overlap.data(), DType::kI64, {2, 2});
    return p;
  }
};

TEST(CommitSelectionRef, CopiesSelectingTokensAndCountsReselectOverlap) {
  Fixture f;
  commit_selection(f.params(), Stream{});
  const std::vector<int32_t> want_lists = {3, 5, 6, 9,  2, 7, -5, -5,  //
                                           0, 4, 9, 11, 6, 6, 6,  6,   //
                                           1, 2, 3, 4,  5, 6, 7,  8};
  EXPECT_EQ(f.lists, want_lists);
  EXPECT_EQ(f.counts, (std::vector<int32_t>{4, 2, 4, 4, 4, 4}));
  EXPECT_EQ(f.overlap, (std::vector<int64_t>{10, 20, 33, 45}));
}

TEST(CommitSelectionRef, SelectCountsNoOverlapAndIdenticalListsKeepEverything) {
  Fixture f;
  f.roles[0] = uint8_t(TokenRole::kSelect);
  commit_selection(f.params(), Stream{});
  EXPECT_EQ(f.overlap, (std::vector<int64_t>{10, 20, 30, 40}));
  // Re-selecting the lists just committed keeps all of them.
  f.roles = {uint8_t(TokenRole::kReselect), uint8_t(TokenRole::kDense), uint8_t(TokenRole::kQuest)};
  commit_selection(f.params(), Stream{});
  EXPECT_EQ(f.overlap, (std::vector<int64_t>{10, 20, 36, 46}));
}

// Rows (kernels/cache_rows.h), page size 4, block-table row 1 = pages {5, 0, 2, none}:
//   token 0 (n 9, prior 6): {3, 5, 6, 9} -> 23, 1, 6 written this step (-2 - 2), 9 past n (-1);
//     {2, 7} -> 22, 7 written (-2 - 3), then nothing past the count;
//   token 1 (n 14, prior 13), L = 1, count 4: {0, 4, 9, 13} -> 20, 0, 9, 13's page unmapped (-1);
//     its list 1 and token 2 (kSparse) are not written.
TEST(CommitSelectionRef, ResolvesNewListsToCacheRows) {
  Fixture f;
  std::vector<int32_t> rows(24, 77);
  std::vector<int32_t> tables = {9, 9, 9, 9, 5, 0, 2, -1};
  std::vector<int32_t> lengths = {9, 14, 5}, prior = {6, 13, 5};
  f.new_counts[2] = 4;
  f.new_lists[11] = 13;
  CommitSelectionParams p = f.params();
  p.rows = make_view(rows.data(), DType::kI32, {3, 2, 4});
  p.block_tables = make_view(tables.data(), DType::kI32, {2, 4});
  p.lengths = make_view(lengths.data(), DType::kI32, {3});
  p.prior_lens = make_view(prior.data(), DType::kI32, {3});
  p.page_size = 4;
  commit_selection(p, Stream{});
  const std::vector<int32_t> want = {23, 1,  -4, -1, 22, -5, -1, -1,  //
                                     20, 0,  9,  -1, 77, 77, 77, 77,  //
                                     77, 77, 77, 77, 77, 77, 77, 77};
  EXPECT_EQ(rows, want);
  // What each entry says.
  EXPECT_EQ(cache_row(-4), 2);
  EXPECT_FALSE(cache_row_predates_step(-4));
  EXPECT_TRUE(cache_row_predates_step(23));
  EXPECT_TRUE(cache_row_predates_step(kNoCacheRow));
  EXPECT_EQ(cache_row(kNoCacheRow), -1);

  // Without prior_lens every row counts as written by the step.
  f = Fixture{};
  p = f.params();
  p.rows = make_view(rows.data(), DType::kI32, {3, 2, 4});
  p.block_tables = make_view(tables.data(), DType::kI32, {2, 4});
  p.lengths = make_view(lengths.data(), DType::kI32, {3});
  p.page_size = 4;
  commit_selection(p, Stream{});
  EXPECT_EQ(std::vector<int32_t>(rows.begin(), rows.begin() + 8),
            (std::vector<int32_t>{-25, -3, -4, -1, -24, -5, -1, -1}));
  // A sequence past the block table's rows resolves to nothing.
  p.block_tables = make_view(tables.data(), DType::kI32, {1, 4});
  commit_selection(p, Stream{});
  EXPECT_EQ(std::vector<int32_t>(rows.begin(), rows.begin() + 8), std::vector<int32_t>(8, -1));
}

TEST(CommitSelectionRef, BadPlansAreBugs) {
  Fixture f;
  f.num_lists[0] = 3;
  EXPECT_DEATH(commit_selection(f.params(), Stream{}), "num_lists out of range");
  f.num_lists[0] = 2;
  f.seq_ids[0] = 2;
  EXPECT_DEATH(commit_selection(f.params(), Stream{}), "seq id out of range");
}

}  // namespace
}  // namespace tidal::kernels
