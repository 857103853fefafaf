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
