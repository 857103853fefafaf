// SPDX-License-Identifier: Apache-2.0
// cuda:: Quest ops against their ref:: twins: page bounds exactly (prefill chunks crossing pages,
// a chunk starting mid-page, decode tokens, stale bounds), page scores to f32 tolerance with
// the role filter and untouched entries, and page expansion exactly; every float dtype.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/quest.h"
#include "runtime/device.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

using testing::DeviceTensor;

constexpr int64_t kPageSize = 16;

template <typename T>
HostTensor host(std::vector<int64_t> shape, DType dtype, const std::vector<T>& v) {
  HostTensor t(std::move(shape), dtype);
  std::memcpy(t.view().data, v.data(), v.size() * sizeof(T));
  return t;
}
template <typename T>
DeviceTensor device(std::vector<int64_t> shape, DType dtype, const std::vector<T>& v) {
  return DeviceTensor::from_host(host(std::move(shape), dtype, v).view());
}
// A host tensor filled with the bytes DeviceTensor::filled(..., 0x7F) holds.
HostTensor poisoned(std::vector<int64_t> shape, DType dtype) {
  HostTensor t(std::move(shape), dtype);
  std::memset(t.view().data, 0x7F, t.view().nbytes());
  return t;
}

// Sequences over a scrambled pool of `pool_pages` pages: block-table row s holds pages_per_seq
// distinct pages. Rows share pages when the pool is smaller than seqs * pages_per_seq (reading
// the bounds does not mind; appending would).
struct Pool {
  int64_t seqs, pages_per_seq, pool_pages;
  std::vector<int32_t> table;
  Pool(int64_t s, int64_t per, uint32_t seed, int64_t pool = 0)
      : seqs(s), pages_per_seq(per), pool_pages(pool > 0 ? pool : s * per), table(size_t(s * per)) {
    std::vector<int32_t> perm(static_cast<size_t>(pool_pages));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), std::mt19937(seed));
    const int64_t shift = pool_pages == s * per ? 0 : 13;  // a full pool: every page once
    for (int64_t i = 0; i < s * per; ++i) {
      const int64_t row = i / per;
      table[size_t(i)] = perm[size_t((i + shift * row) % pool_pages)];
    }
  }
  int64_t num_pages() const { return pool_pages; }
};

struct DtypeCase {
  std::string name;
  DType dtype;
  int64_t heads, kv_heads, head_dim;
};

class QuestCuda : public ::testing::TestWithParam<DtypeCase> {};

// Two calls over stale bounds: (1) seq 1 positions 0..20 (a page and 5 slots); (2) seq 0
// positions 0..37 (crosses two page boundaries), seq 1 positions 21..50 (starts mid-page),
// decode tokens of seq 2 at 77 (mid-page) and seq 3 at 32 (slot 0: restarts its page).
// fp8_keys: the keys folded as the FP8 cache holds them (quantized and dequantized per row).
void expect_metadata_update_matches_ref(const DtypeCase& c, bool fp8_keys) {
  const Pool pool(4, 8, 3);
  const std::vector<int64_t> bounds_shape = {pool.num_pages(), c.kv_heads, c.head_dim};
  HostTensor want_max = testing::convert(testing::random_tensor(bounds_shape, 1).view(), c.dtype);
  HostTensor want_min = testing::convert(testing::random_tensor(bounds_shape, 2).view(), c.dtype);
  DeviceTensor got_max = DeviceTensor::from_host(want_max.view());
  DeviceTensor got_min = DeviceTensor::from_host(want_min.view());
  const HostTensor table = host({pool.seqs, pool.pages_per_seq}, DType::kI32, pool.table);
  const DeviceTensor table_d = DeviceTensor::from_host(table.view());
  const std::vector<std::vector<std::pair<int32_t, int32_t>>> calls = {
      {{1, 0}, {1, 20}}, {{0, 0}, {0, 37}, {1, 21}, {1, 50}, {2, 77}, {2, 77}, {3, 32}, {3, 32}}};
  uint32_t seed = 10;
  for (const auto& ranges : calls) {
    std::vector<int32_t> seqs, positions;
    for (size_t r = 0; r < ranges.size(); r += 2) {
      for (int32_t p = ranges[r].second; p <= ranges[r + 1].second; ++p) {
        seqs.push_back(ranges[r].first);
        positions.push_back(p);
      }
    }
    const int64_t n = int64_t(seqs.size());
    const HostTensor k = testing::convert(
        testing::random_tensor({n, c.kv_heads, c.head_dim}, seed++).view(), c.dtype);
    const HostTensor seq_h = host({n}, DType::kI32, seqs),
                     pos_h = host({n}, DType::kI32, positions);
    QuestMetadataParams p;
    p.key_max = want_max.view();
    p.key_min = want_min.view();
    p.block_tables = table.view();
    p.seq_ids = seq_h.view();
    p.positions = pos_h.view();
    p.k = k.view();
    p.page_size = kPageSize;
    p.fp8_keys = fp8_keys;
    ref::quest_metadata_update(p);
    const DeviceTensor k_d = DeviceTensor::from_host(k.view());
    const DeviceTensor seq_d = DeviceTensor::from_host(seq_h.view());
    const DeviceTensor pos_d = DeviceTensor::from_host(pos_h.view());
    p.key_max = got_max.view();
    p.key_min = got_min.view();
    p.block_tables = table_d.view();
    p.seq_ids = seq_d.view();
    p.positions = pos_d.view();
    p.k = k_d.view();
    quest_metadata_update(p, Stream{});
    stream_synchronize(Stream{});
  }
  EXPECT_TRUE(testing::all_close(got_max.to_floats(), testing::to_vector(want_max.view()), 0, 0));
  EXPECT_TRUE(testing::all_close(got_min.to_floats(), testing::to_vector(want_min.view()), 0, 0));
}

TEST_P(QuestCuda, MetadataUpdateMatchesRefExactly) {
  TIDAL_SKIP_WITHOUT_CUDA();
  expect_metadata_update_matches_ref(GetParam(), false);
}

TEST_P(QuestCuda, MetadataUpdateOfFp8KeysMatchesRefExactly) {
  TIDAL_SKIP_WITHOUT_CUDA();
  expect_metadata_update_matches_ref(GetParam(), true);
}

// Tokens of every role and many lengths (0, 1 and many full pages); only kQuest tokens are
// scored, entries from the current page on stay untouched.
TEST_P(QuestCuda, PageScoresMatchRef) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const DtypeCase& c = GetParam();
  const bool big = c.heads == 32 && c.kv_heads == 8 && c.head_dim == 128;
  const std::vector<int32_t> lengths = {1, 16, 17, 733, big ? 32768 : 4000, 300, 501, 200, 5};
  const std::vector<uint8_t> roles = {4, 4, 4, 4, 4, 0, 4, 3, 4};
  const int64_t tokens = int64_t(lengths.size());
  const int64_t per_seq =
      (*std::max_element(lengths.begin(), lengths.end()) + kPageSize - 1) / kPageSize;
  const Pool pool(tokens, per_seq, 7, per_seq + 7);
  std::vector<int32_t> seqs(static_cast<size_t>(tokens));
  std::iota(seqs.begin(), seqs.end(), 0);
  std::reverse(seqs.begin(), seqs.end());
  const std::vector<int64_t> bounds_shape = {pool.num_pages(), c.kv_heads, c.head_dim};
  // Bounds that are real bounds (max >= min) over keys of scale 1.
  HostTensor a = testing::random_tensor(bounds_shape, 4),
             b = testing::random_tensor(bounds_shape, 5);
  for (int64_t i = 0; i < a.view().numel(); ++i) {
    float& x = a.view().data_as<float>()[i];
    float& y = b.view().data_as<float>()[i];
    if (x < y) std::swap(x, y);
  }
  const HostTensor key_max = testing::convert(a.view(), c.dtype);
  const HostTensor key_min = testing::convert(b.view(), c.dtype);
  const HostTensor q =
      testing::convert(testing::random_tensor({tokens, c.heads, c.head_dim}, 6).view(), c.dtype);
  const HostTensor table = host({pool.seqs, pool.pages_per_seq}, DType::kI32, pool.table);
  const HostTensor seq_h = host({tokens}, DType::kI32, seqs);
  const HostTensor len_h = host({tokens}, DType::kI32, lengths);
  const HostTensor role_h = host({tokens}, DType::kU8, roles);
  HostTensor want = poisoned({tokens, c.heads, per_seq}, DType::kF32);
  QuestPageScoresParams p;
  p.out = want.view();
  p.q = q.view();
  p.key_max = key_max.view();
  p.key_min = key_min.view();
  p.block_tables = table.view();
  p.seq_ids = seq_h.view();
  p.lengths = len_h.view();
  p.roles = role_h.view();
  p.page_size = kPageSize;
  ref::quest_page_scores(p);

  const DeviceTensor out_d = DeviceTensor::filled({tokens, c.heads, per_seq}, DType::kF32, 0x7F);
  const DeviceTensor q_d = DeviceTensor::from_host(q.view());
  const DeviceTensor max_d = DeviceTensor::from_host(key_max.view());
  const DeviceTensor min_d = DeviceTensor::from_host(key_min.view());
  const DeviceTensor table_d = DeviceTensor::from_host(table.view());
  const DeviceTensor seq_d = DeviceTensor::from_host(seq_h.view());
  const DeviceTensor len_d = DeviceTensor::from_host(len_h.view());
  const DeviceTensor role_d = DeviceTensor::from_host(role_h.view());
  p.out = out_d.view();
  p.q = q_d.view();
  p.key_max = max_d.view();
  p.key_min = min_d.view();
  p.block_tables = table_d.view();
  p.seq_ids = seq_d.view();
  p.lengths = len_d.view();
  p.roles = role_d.view();
  quest_page_scores(p, Stream{});
  const testing::Tolerance tol = testing::tolerance(DType::kF32);
  EXPECT_TRUE(
      testing::all_close(out_d.to_floats(), testing::to_vector(want.view()), tol.atol, tol.rtol));
}

INSTANTIATE_TEST_SUITE_P(Shapes, QuestCuda,
                         ::testing::Values(DtypeCase{"llama3_8b_bf16", DType::kBF16, 32, 8, 128},
                                           DtypeCase{"llama3_8b_f16", DType::kF16, 32, 8, 128},
                                           DtypeCase{"llama3_8b_f32", DType::kF32, 32, 8, 128},
                                           DtypeCase{"mha_hd64_bf16", DType::kBF16, 8, 8, 64},
                                           DtypeCase{"gqa_hd80_bf16", DType::kBF16, 8, 2, 80},
                                           DtypeCase{"odd_hd36_bf16", DType::kBF16, 4, 2, 36},
                                           DtypeCase{"odd_hd7_f32", DType::kF32, 3, 1, 7},
                                           DtypeCase{"one_head_hd1_f16", DType::kF16, 1, 1, 1}),
                         [](const ::testing::TestParamInfo<DtypeCase>& info) {
                           return info.param.name;
                         });

// Random ascending page lists (the current page sometimes in, sometimes not, sometimes empty)
// for tokens of mixed roles and list counts; lists and tokens not expanded stay untouched.
TEST(QuestCudaExpand, MatchesRefExactly) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const int64_t tokens = 7, max_lists = 4, max_page_budget = 8, max_budget = 8 * kPageSize + 5;
  std::mt19937 rng(9);
  std::vector<int32_t> lengths, lists, pages(size_t(tokens * max_lists * max_page_budget), -1),
      page_counts(size_t(tokens * max_lists), 0);
  std::vector<uint8_t> roles;
  for (int64_t t = 0; t < tokens; ++t) {
    lengths.push_back(int32_t(t == 0 ? 1 : 1 + rng() % 400));
    lists.push_back(int32_t(1 + rng() % max_lists));
    roles.push_back(uint8_t(t % 3 == 2 ? rng() % 4 : 4));
    const int32_t current = (lengths.back() - 1) / int32_t(kPageSize);
    for (int64_t l = 0; l < max_lists; ++l) {
      std::vector<int32_t> all(size_t(current + 1));
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng);
      const size_t num = std::min<size_t>(all.size(), rng() % (max_page_budget + 1));
      std::sort(all.begin(), all.begin() + long(num));
      page_counts[size_t(t * max_lists + l)] = int32_t(num);
      for (size_t i = 0; i < num; ++i)
        pages[size_t((t * max_lists + l) * max_page_budget) + i] = all[i];
    }
  }
  const HostTensor pages_h = host({tokens, max_lists, max_page_budget}, DType::kI32, pages);
  const HostTensor counts_h = host({tokens, max_lists}, DType::kI32, page_counts);
  const HostTensor len_h = host({tokens}, DType::kI32, lengths);
  const HostTensor lists_h = host({tokens}, DType::kI32, lists);
  const HostTensor roles_h = host({tokens}, DType::kU8, roles);
  HostTensor want = poisoned({tokens, max_lists, max_budget}, DType::kI32);
  HostTensor want_counts = poisoned({tokens, max_lists}, DType::kI32);
  ExpandPagesParams p;
  p.positions = want.view();
  p.counts = want_counts.view();
  p.pages = pages_h.view();
  p.page_counts = counts_h.view();
  p.lengths = len_h.view();
  p.num_lists = lists_h.view();
  p.roles = roles_h.view();
  p.page_size = kPageSize;
  ref::expand_pages(p);

  const DeviceTensor out_d =
      DeviceTensor::filled({tokens, max_lists, max_budget}, DType::kI32, 0x7F);
  const DeviceTensor counts_d = DeviceTensor::filled({tokens, max_lists}, DType::kI32, 0x7F);
  const DeviceTensor pages_d = DeviceTensor::from_host(pages_h.view());
  const DeviceTensor page_counts_d = DeviceTensor::from_host(counts_h.view());
  const DeviceTensor len_d = DeviceTensor::from_host(len_h.view());
  const DeviceTensor lists_d = DeviceTensor::from_host(lists_h.view());
  const DeviceTensor roles_d = DeviceTensor::from_host(roles_h.view());
  p.positions = out_d.view();
  p.counts = counts_d.view();
  p.pages = pages_d.view();
  p.page_counts = page_counts_d.view();
  p.lengths = len_d.view();
  p.num_lists = lists_d.view();
  p.roles = roles_d.view();
  expand_pages(p, Stream{});
  auto ints = [](const HostTensor& h) {
    const int32_t* d = h.view().data_as<int32_t>();
    return std::vector<int32_t>(d, d + h.view().numel());
  };
  EXPECT_EQ(ints(out_d.to_host()), ints(want));
  EXPECT_EQ(ints(counts_d.to_host()), ints(want_counts));
}

}  // namespace
}  // namespace tidal::kernels
