// SPDX-License-Identifier: Apache-2.0
#include "kernels/gather_attention.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/paged_attention.h"
#include "kernels/paged_kv_common.h"
#include "runtime/tensor_access.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

TEST(GatherAttentionRef, KnownValuesPerHeadLists) {
  // One sequence, 2 query heads on 1 KV head, head_dim 2, page_size 2, pages {1, 0}.
  // Keys k0 = (1, 0), k1 = (0, 1), k2 = (1, 1); values v_j = (j, 10 j).
  HostTensor kc({2, 2, 1, 2}, DType::kF32), vc({2, 2, 1, 2}, DType::kF32);
  int32_t table[2] = {1, 0};
  const float keys[3][2] = {{1, 0}, {0, 1}, {1, 1}};
  for (int j = 0; j < 3; ++j) {
    for (int d = 0; d < 2; ++d) set_f32(kc.view(), table[j / 2], j % 2, 0, d, keys[j][d]);
    set_f32(vc.view(), table[j / 2], j % 2, 0, 0, float(j));
    set_f32(vc.view(), table[j / 2], j % 2, 0, 1, float(10 * j));
  }
  // Head 0: q = (sqrt 2, 0), list {0, 2}: scores q.k / sqrt 2 = {1, 1}, weights 1/2 each
  //   -> (0 + 2) / 2 = 1 and (0 + 20) / 2 = 10. Key 1 (score 0) is not in the list.
  // Head 1: q = (sqrt 2 ln 3, 0), list {1, 2}: scores {0, ln 3}, weights {1/4, 3/4}
  //   -> 1/4 (1, 10) + 3/4 (2, 20) = (1.75, 17.5). The padding -1 is never read.
  const float s2 = std::sqrt(2.0f);
  const HostTensor q = HostTensor::from({1, 2, 2}, {s2, 0, s2 * float(std::log(3.0)), 0});
  HostTensor out({1, 2, 2}, DType::kF32);
  int32_t seq[1] = {0};
  int32_t indices[2][3] = {{0, 2, -1}, {1, 2, -1}};
  int32_t counts[2] = {2, 2};
  GatherAttentionParams p;
  p.out = out.view();
  p.q = q.view();
  p.k_cache = kc.view();
  p.v_cache = vc.view();
  p.block_tables = make_view(table, DType::kI32, {1, 2});
  p.seq_ids = make_view(seq, DType::kI32, {1});
  p.indices = make_view(indices, DType::kI32, {1, 2, 3});
  p.counts = make_view(counts, DType::kI32, {1, 2});
  gather_attention(p);
  EXPECT_TRUE(
      testing::all_close(testing::to_vector(out.view()), {1, 10, 1.75f, 17.5f}, 1e-6f, 1e-6f));

  // An explicit scale: head 0 with scale 0 -> uniform weights either way; head 1 with scale
  // 1 / (sqrt 2 ln 3) has scores {0, 1}: weights {1, e} / (1 + e).
  p.scale = float(1 / (std::sqrt(2.0) * std::log(3.0)));
  gather_attention(p);
  const double e = std::exp(1.0), w2 = e / (1 + e);
  const float v1 = float((1 - w2) * 1 + w2 * 2);
  const std::vector<float> want = {1, 10, v1, 10 * v1};
  // Head 0's scores become {1/ln 3, 1/ln 3}: still equal, still the mean.
  EXPECT_TRUE(testing::all_close(testing::to_vector(out.view()), want, 1e-6f, 1e-6f));
}

TEST(GatherAttentionRef, BadArgumentsAreBugs) {
  HostTensor kc({1, 2, 1, 2}, DType::kF32), vc({1, 2, 1, 2}, DType::kF32);
  int32_t table[1] = {0}, seq[1] = {0};
  int32_t indices[3] = {0, 1, -1}, counts[3] = {2, 2, 2};
  HostTensor q({1, 4, 2}, DType::kF32), out({1, 4, 2}, DType::kF32);
  GatherAttentionParams p;
  p.out = out.view();
  p.q = q.view();
  p.k_cache = kc.view();
  p.v_cache = vc.view();
  p.block_tables = make_view(table, DType::kI32, {1, 1});
  p.seq_ids = make_view(seq, DType::kI32, {1});
  p.indices = make_view(indices, DType::kI32, {1, 3, 1});  // 4 heads, 3 lists
  p.counts = make_view(counts, DType::kI32, {1, 3});
  EXPECT_DEATH(gather_attention(p), "multiple of num_lists");
  p.indices = make_view(indices, DType::kI32, {1, 1, 3});
  p.counts = make_view(counts, DType::kI32, {1, 3});
  EXPECT_DEATH(gather_attention(p), "gather_attention: counts");
  counts[0] = 0;
  p.counts = make_view(counts, DType::kI32, {1, 1});
  EXPECT_DEATH(gather_attention(p), "count outside");
  counts[0] = 3;  // reads the -1
  EXPECT_DEATH(gather_attention(p), "paged kv");
}

struct Case {
  std::string name;
  int64_t num_heads, num_kv_heads, head_dim, page_size, num_lists;
};

// Two sequences over a shared pool of pages in scrambled order, three decode tokens at
// positions {13, 6, 0} (seqs {0, 1, 0}), random q, K and V.
struct Scene {
  static constexpr int64_t kNumTokens = 3;
  Case c;
  int64_t max_pages;  // enough for position 13
  HostTensor kc, vc, q;
  std::vector<int32_t> table, seq{0, 1, 0}, pos{13, 6, 0};
  int64_t budget;

  explicit Scene(const Case& cs)
      : c(cs),
        max_pages((14 + cs.page_size - 1) / cs.page_size),
        kc(testing::random_tensor({2 * max_pages, cs.page_size, cs.num_kv_heads, cs.head_dim}, 1)),
        vc(testing::random_tensor({2 * max_pages, cs.page_size, cs.num_kv_heads, cs.head_dim}, 2)),
        q(testing::random_tensor({kNumTokens, cs.num_heads, cs.head_dim}, 3)),
        table(size_t(2 * max_pages)),
        budget(max_pages * cs.page_size) {
    std::iota(table.begin(), table.end(), 0);
    std::shuffle(table.begin(), table.end(), std::mt19937(5));
  }
  TensorView block_tables() { return make_view(table.data(), DType::kI32, {2, max_pages}); }
  TensorView seq_ids() { return make_view(seq.data(), DType::kI32, {kNumTokens}); }

  GatherAttentionParams params(HostTensor& out, std::vector<int32_t>& indices,
                               std::vector<int32_t>& counts) {
    GatherAttentionParams p;
    p.out = out.view();
    p.q = q.view();
    p.k_cache = kc.view();
    p.v_cache = vc.view();
    p.block_tables = block_tables();
    p.seq_ids = seq_ids();
    p.indices = make_view(indices.data(), DType::kI32, {kNumTokens, c.num_lists, budget});
    p.counts = make_view(counts.data(), DType::kI32, {kNumTokens, c.num_lists});
    return p;
  }
};

class GatherAttentionProperty : public ::testing::TestWithParam<Case> {};

TEST_P(GatherAttentionProperty, AllPositionsListedEqualsDenseAttention) {
  Scene s(GetParam());
  const Case& c = s.c;
  std::vector<int32_t> indices(size_t(Scene::kNumTokens * c.num_lists * s.budget), -1);
  std::vector<int32_t> counts(size_t(Scene::kNumTokens * c.num_lists));
  for (int64_t t = 0; t < Scene::kNumTokens; ++t) {
    for (int64_t l = 0; l < c.num_lists; ++l) {
      counts[size_t(t * c.num_lists + l)] = s.pos[size_t(t)] + 1;
      for (int32_t j = 0; j <= s.pos[size_t(t)]; ++j) {
        indices[size_t((t * c.num_lists + l) * s.budget + j)] = j;
      }
    }
  }
  HostTensor got({Scene::kNumTokens, c.num_heads, c.head_dim}, DType::kF32);
  gather_attention(s.params(got, indices, counts));

  HostTensor want({Scene::kNumTokens, c.num_heads, c.head_dim}, DType::kF32);
  PagedAttentionParams d;
  d.out = want.view();
  d.q = s.q.view();
  d.k_cache = s.kc.view();
  d.v_cache = s.vc.view();
  d.block_tables = s.block_tables();
  d.seq_ids = s.seq_ids();
  d.positions = make_view(s.pos.data(), DType::kI32, {Scene::kNumTokens});
  ref::paged_attention(d);
  EXPECT_TRUE(testing::all_close(testing::to_vector(got.view()), testing::to_vector(want.view()),
                                 1e-6f, 1e-6f));
}

TEST_P(GatherAttentionProperty, SinglePositionReturnsItsValueExactly) {
  Scene s(GetParam());
  const Case& c = s.c;
  // List l of token t holds one position, (3 l + t) mod (pos + 1); the rest is garbage that
  // must not be read.
  std::vector<int32_t> indices(size_t(Scene::kNumTokens * c.num_lists * s.budget), -7);
  std::vector<int32_t> counts(size_t(Scene::kNumTokens * c.num_lists), 1);
  for (int64_t t = 0; t < Scene::kNumTokens; ++t) {
    for (int64_t l = 0; l < c.num_lists; ++l) {
      indices[size_t((t * c.num_lists + l) * s.budget)] =
          int32_t((3 * l + t) % (s.pos[size_t(t)] + 1));
    }
  }
  HostTensor got({Scene::kNumTokens, c.num_heads, c.head_dim}, DType::kF32);
  gather_attention(s.params(got, indices, counts));
  const PagedKv kv{s.kc.view(), s.vc.view(), s.block_tables()};
  for (int64_t t = 0; t < Scene::kNumTokens; ++t) {
    for (int64_t h = 0; h < c.num_heads; ++h) {
      const int64_t l = h / (c.num_heads / c.num_lists), kvh = h / (c.num_heads / c.num_kv_heads);
      const PagedSlot slot =
          kv.slot(s.seq[size_t(t)], indices[size_t((t * c.num_lists + l) * s.budget)]);
      for (int64_t d = 0; d < c.head_dim; ++d) {
        EXPECT_EQ(get_f32(got.view(), t, h, d),
                  get_f32(s.vc.view(), slot.page, slot.offset, kvh, d))
            << "token " << t << " head " << h << " dim " << d;
      }
    }
  }
}

TEST_P(GatherAttentionProperty, ListOrderDoesNotMatter) {
  Scene s(GetParam());
  const Case& c = s.c;
  // Every list: the even positions up to pos, plus pos; then the same list reversed.
  std::vector<int32_t> fwd(size_t(Scene::kNumTokens * c.num_lists * s.budget), -1), rev = fwd;
  std::vector<int32_t> counts(size_t(Scene::kNumTokens * c.num_lists));
  for (int64_t t = 0; t < Scene::kNumTokens; ++t) {
    std::vector<int32_t> list;
    for (int32_t j = 0; j < s.pos[size_t(t)]; j += 2) list.push_back(j + int32_t(t % 2));
    if (list.empty() || list.back() != s.pos[size_t(t)]) list.push_back(s.pos[size_t(t)]);
    for (int64_t l = 0; l < c.num_lists; ++l) {
      counts[size_t(t * c.num_lists + l)] = int32_t(list.size());
      std::copy(list.begin(), list.end(), fwd.begin() + (t * c.num_lists + l) * s.budget);
      std::copy(list.rbegin(), list.rend(), rev.begin() + (t * c.num_lists + l) * s.budget);
    }
  }
  HostTensor a({Scene::kNumTokens, c.num_heads, c.head_dim}, DType::kF32);
  HostTensor b({Scene::kNumTokens, c.num_heads, c.head_dim}, DType::kF32);
  gather_attention(s.params(a, fwd, counts));
  gather_attention(s.params(b, rev, counts));
  EXPECT_TRUE(
      testing::all_close(testing::to_vector(a.view()), testing::to_vector(b.view()), 1e-6f, 1e-6f));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, GatherAttentionProperty,
    ::testing::Values(Case{"mha_page1", 2, 2, 1, 1, 2}, Case{"gqa_per_query_head", 8, 2, 16, 4, 8},
                      Case{"gqa_per_kv_head", 8, 2, 16, 4, 2}, Case{"gqa_shared", 8, 2, 16, 4, 1},
                      Case{"odd_sizes", 6, 3, 7, 5, 3}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace tidal::kernels
