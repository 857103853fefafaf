// SPDX-License-Identifier: Apache-2.0
// commit_selection on the GPU against ref:: over named shapes: random ascending old and new
// lists that partly overlap, mixed roles, several tokens per counter row (atomics); lists,
// counts, overlap counters and the lists' cache rows compared exactly.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/commit_selection.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

struct Case {
  std::string name;
  int64_t num_tokens, max_lists, budget, num_rows;
};

class CommitSelectionCuda : public ::testing::TestWithParam<Case> {};

TEST_P(CommitSelectionCuda, MatchesReference) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const Case& c = GetParam();
  std::mt19937 rng(uint32_t(c.budget * 131 + c.max_lists));
  const int64_t rows = c.num_tokens * c.max_lists;
  std::vector<int32_t> lists(size_t(rows * c.budget)), new_lists(lists.size());
  std::vector<int32_t> counts(static_cast<size_t>(rows)), new_counts(static_cast<size_t>(rows));
  std::vector<int32_t> num_lists, seq_ids;
  std::vector<uint8_t> roles;
  std::vector<int64_t> overlap(size_t(c.num_rows * 2));
  for (int64_t& v : overlap) v = int64_t(rng() % 1000);
  // Positions drawn from 0..n-1 with n = 3 budget: old and new lists overlap by about a third.
  const int32_t n = int32_t(3 * c.budget);
  std::vector<int32_t> universe(static_cast<size_t>(n));
  std::iota(universe.begin(), universe.end(), 0);
  auto fill = [&](int32_t* dst, int32_t* count) {
    *count = int32_t(1 + rng() % uint32_t(c.budget));
    std::shuffle(universe.begin(), universe.end(), rng);
    std::copy(universe.begin(), universe.begin() + *count, dst);
    std::sort(dst, dst + *count);
    for (int64_t i = *count; i < c.budget; ++i) dst[i] = -int32_t(rng() % 100) - 1;  // padding
  };
  for (int64_t r = 0; r < rows; ++r) {
    fill(lists.data() + r * c.budget, &counts[size_t(r)]);
    fill(new_lists.data() + r * c.budget, &new_counts[size_t(r)]);
  }
  const TokenRole cycle[] = {TokenRole::kReselect, TokenRole::kSelect,   TokenRole::kSparse,
                             TokenRole::kDense,    TokenRole::kReselect, TokenRole::kQuest};
  for (int64_t t = 0; t < c.num_tokens; ++t) {
    roles.push_back(uint8_t(cycle[t % 6]));
    num_lists.push_back(int32_t(1 + rng() % uint32_t(c.max_lists)));
    seq_ids.push_back(int32_t(rng() % uint32_t(c.num_rows)));  // rows shared by several tokens
  }
  if (c.num_tokens > 0) num_lists[0] = int32_t(c.max_lists);
  // Rows (kernels/cache_rows.h): pages of 16 over n = 3 budget positions (some unmapped, and the
  // last counter row past the table), lengths around n, a prior a few positions below.
  const int64_t page_size = 16, max_pages = (n + page_size - 1) / page_size;
  const int64_t table_rows = std::max<int64_t>(1, c.num_rows - 1);
  std::vector<int32_t> cache_rows(lists.size(), 77), tables(size_t(table_rows * max_pages));
  for (int32_t& page : tables) page = rng() % 8 == 0 ? -1 : int32_t(rng() % 4096);
  std::vector<int32_t> lengths, prior;
  for (int64_t t = 0; t < c.num_tokens; ++t) {
    lengths.push_back(int32_t(n - int32_t(rng() % 8)));
    prior.push_back(std::max(0, lengths.back() - 1 - int32_t(rng() % 3)));
  }

  auto params = [&](auto view_of) {
    CommitSelectionParams p;
    p.lists = view_of(lists.data(), DType::kI32, {c.num_tokens, c.max_lists, c.budget});
    p.counts = view_of(counts.data(), DType::kI32, {c.num_tokens, c.max_lists});
    p.new_lists = view_of(new_lists.data(), DType::kI32, {c.num_tokens, c.max_lists, c.budget});
    p.new_counts = view_of(new_counts.data(), DType::kI32, {c.num_tokens, c.max_lists});
    p.num_lists = view_of(num_lists.data(), DType::kI32, {c.num_tokens});
    p.roles = view_of(roles.data(), DType::kU8, {c.num_tokens});
    p.seq_ids = view_of(seq_ids.data(), DType::kI32, {c.num_tokens});
    p.overlap = view_of(overlap.data(), DType::kI64, {c.num_rows, 2});
    p.rows = view_of(cache_rows.data(), DType::kI32, {c.num_tokens, c.max_lists, c.budget});
    p.block_tables = view_of(tables.data(), DType::kI32, {table_rows, max_pages});
    p.lengths = view_of(lengths.data(), DType::kI32, {c.num_tokens});
    p.prior_lens = view_of(prior.data(), DType::kI32, {c.num_tokens});
    p.page_size = page_size;
    return p;
  };
  std::vector<testing::DeviceTensor> keep;
  const CommitSelectionParams d = params([&](void* data, DType dtype, std::vector<int64_t> shape) {
    keep.push_back(testing::DeviceTensor::from_host(make_view(data, dtype, shape)));
    return keep.back().view();
  });
  commit_selection(d, Stream{});
  stream_synchronize(Stream{});
  ref::commit_selection(params([](void* data, DType dtype, std::vector<int64_t> shape) {
    return make_view(data, dtype, shape);
  }));

  auto ints = [](const testing::DeviceTensor& t) {
    const HostTensor h = t.to_host();
    const TensorView v = h.view();
    std::vector<int64_t> out;
    for (int64_t i = 0; i < v.numel(); ++i) {
      out.push_back(v.dtype == DType::kI64 ? v.data_as<int64_t>()[i] : v.data_as<int32_t>()[i]);
    }
    return out;
  };
  EXPECT_EQ(ints(keep[0]), std::vector<int64_t>(lists.begin(), lists.end())) << "lists";
  EXPECT_EQ(ints(keep[1]), std::vector<int64_t>(counts.begin(), counts.end())) << "counts";
  EXPECT_EQ(ints(keep[7]), overlap) << "overlap";
  EXPECT_EQ(ints(keep[8]), std::vector<int64_t>(cache_rows.begin(), cache_rows.end())) << "rows";
  // The inputs the op only reads are unchanged.
  EXPECT_EQ(ints(keep[2]), std::vector<int64_t>(new_lists.begin(), new_lists.end()));
}

INSTANTIATE_TEST_SUITE_P(Shapes, CommitSelectionCuda,
                         ::testing::Values(Case{"one_token_budget1", 1, 1, 1, 1},
                                           Case{"budget37_odd", 7, 3, 37, 2},
                                           Case{"per_head_32_lists_k2048", 6, 32, 2048, 3},
                                           Case{"per_kv_head_8_lists_k733", 37, 8, 733, 5},
                                           Case{"batch64_shared_k4096", 64, 1, 4096, 16}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace tidal::kernels
