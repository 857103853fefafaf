// SPDX-License-Identifier: Apache-2.0
#include "kernels/quest.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/gather_attention.h"
#include "kernels/paged_attention.h"
#include "runtime/tensor_access.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

std::vector<int32_t> ints(const HostTensor& t) {
  const int32_t* p = t.view().data_as<int32_t>();
  return std::vector<int32_t>(p, p + t.view().numel());
}

// One sequence, page_size 2, 1 KV head, head_dim 2, logical pages {0, 1} -> rows {1, 0}.
// Keys appended one by one: k0 = (1, -2), k1 = (3, -5), k2 = (0, 4).
struct KnownScene {
  HostTensor key_max = HostTensor::from({2, 1, 2}, {99, 99, 99, 99});  // stale values
  HostTensor key_min = HostTensor::from({2, 1, 2}, {-99, -99, -99, -99});
  int32_t table[2] = {1, 0};
  int32_t seq[1] = {0};

  KnownScene() {
    const float keys[3][2] = {{1, -2}, {3, -5}, {0, 4}};
    for (int32_t p = 0; p < 3; ++p) {
      const HostTensor k = HostTensor::from({1, 1, 2}, {keys[p][0], keys[p][1]});
      int32_t pos[1] = {p};
      quest_metadata_update(key_max.view(), key_min.view(), tables(), seqs(),
                            make_view(pos, DType::kI32, {1}), k.view(), 2);
    }
  }
  TensorView tables() { return make_view(table, DType::kI32, {1, 2}); }
  TensorView seqs() { return make_view(seq, DType::kI32, {1}); }
};

TEST(QuestRef, MetadataKnownValues) {
  KnownScene s;
  // Row 1 (logical page 0, keys k0, k1): max (3, -2), min (1, -5); the stale 99s are gone
  // because slot 0 starts the page fresh. Row 0 (logical page 1, k2 only): max = min = (0, 4).
  EXPECT_TRUE(testing::all_close(testing::to_vector(s.key_max.view()), {0, 4, 3, -2}, 0, 0));
  EXPECT_TRUE(testing::all_close(testing::to_vector(s.key_min.view()), {0, 4, 1, -5}, 0, 0));
}

TEST(QuestRef, PageScoresKnownValues) {
  KnownScene s;
  // Token at position 2: logical page 1 is current, so only page 0 is scored; out[..., 1]
  // keeps its sentinel 7. Two query heads on the one KV head (GQA).
  // Head 0, q = (1, -2):  max(1*3, 1*1) + max(-2*-2, -2*-5) = 3 + 10 = 13 (= q.k1, the bound
  //   is tight here). Head 1, q = (-1, 1): max(-3, -1) + max(-2, -5) = -1 - 2 = -3
  //   (true max over the page: q.k0 = -3, q.k1 = -8).
  const HostTensor q = HostTensor::from({1, 2, 2}, {1, -2, -1, 1});
  HostTensor out = HostTensor::from({1, 2, 2}, {7, 7, 7, 7});
  int32_t pos[1] = {2};
  quest_page_scores(out.view(), q.view(), s.key_max.view(), s.key_min.view(), s.tables(), s.seqs(),
                    make_view(pos, DType::kI32, {1}), 2);
  EXPECT_TRUE(testing::all_close(testing::to_vector(out.view()), {13, 7, -3, 7}, 0, 0));
}

TEST(QuestRef, ExpandPagesKnownValues) {
  // page_size 4, page_budget 3, max_positions 12. Token 0 at position 9 (current page 2 holds
  // 8, 9): list 0 = pages {0, 2} -> 0..3, 8, 9 (6 positions); list 1 = page {1} -> 4..7.
  // Token 1 at position 8, the first slot of page 2: list 0 = {1, 2} -> 4..7, 8; list 1 = {2}.
  int32_t pages[2][2][3] = {{{0, 2, -1}, {1, -1, -1}}, {{1, 2, -1}, {2, -1, -1}}};
  int32_t page_counts[2][2] = {{2, 1}, {2, 1}};
  int32_t pos[2] = {9, 8};
  HostTensor out({2, 2, 12}, DType::kI32), counts({2, 2}, DType::kI32);
  expand_pages(out.view(), counts.view(), make_view(pages, DType::kI32, {2, 2, 3}),
               make_view(page_counts, DType::kI32, {2, 2}), make_view(pos, DType::kI32, {2}), 4);
  const int32_t x = -1;
  EXPECT_EQ(ints(out), (std::vector<int32_t>{0, 1, 2, 3, 8, 9, x, x, x, x, x, x,  //
                                             4, 5, 6, 7, x, x, x, x, x, x, x, x,  //
                                             4, 5, 6, 7, 8, x, x, x, x, x, x, x,  //
                                             8, x, x, x, x, x, x, x, x, x, x, x}));
  EXPECT_EQ(ints(counts), (std::vector<int32_t>{6, 4, 5, 1}));
}

TEST(QuestRef, BadArgumentsAreBugs) {
  int32_t pages[1][1][2] = {{{0, 3}}};
  int32_t page_counts[1][1] = {{2}};
  int32_t pos[1] = {9};
  HostTensor out({1, 1, 8}, DType::kI32), small({1, 1, 7}, DType::kI32),
      counts({1, 1}, DType::kI32);
  const TensorView pv = make_view(pages, DType::kI32, {1, 1, 2});
  const TensorView pc = make_view(page_counts, DType::kI32, {1, 1});
  const TensorView ps = make_view(pos, DType::kI32, {1});
  EXPECT_DEATH(expand_pages(small.view(), counts.view(), pv, pc, ps, 4), "max_positions");
  EXPECT_DEATH(expand_pages(out.view(), counts.view(), pv, pc, ps, 4), "after the current");
  pages[0][0][1] = 0;
  EXPECT_DEATH(expand_pages(out.view(), counts.view(), pv, pc, ps, 4), "ascending");

  HostTensor key_max({2, 2, 4}, DType::kF32), key_min({2, 2, 4}, DType::kF32);
  int32_t table[2] = {0, 1}, seq[1] = {0};
  const HostTensor k({1, 3, 4}, DType::kF32);  // 3 KV heads, metadata has 2
  EXPECT_DEATH(
      quest_metadata_update(key_max.view(), key_min.view(), make_view(table, DType::kI32, {1, 2}),
                            make_view(seq, DType::kI32, {1}), ps, k.view(), 4),
      "quest_metadata_update: k");
  const HostTensor q({1, 3, 4}, DType::kF32);  // 3 query heads over 2 KV heads
  HostTensor scores({1, 3, 2}, DType::kF32);
  EXPECT_DEATH(quest_page_scores(scores.view(), q.view(), key_max.view(), key_min.view(),
                                 make_view(table, DType::kI32, {1, 2}),
                                 make_view(seq, DType::kI32, {1}), ps, 4),
               "multiple of num_kv_heads");
}

// Random scene: 2 sequences of `len` tokens each, pages scrambled over a shared pool, keys
// appended token by token in interleaved order (seq 0 pos 0, seq 1 pos 0, seq 0 pos 1, ...).
struct RandomScene {
  int64_t page_size, num_kv_heads, head_dim, len, max_pages;
  HostTensor kc, vc, key_max, key_min;
  std::vector<int32_t> table;

  RandomScene(int64_t ps, int64_t kvh, int64_t hd, int64_t length, uint32_t seed)
      : page_size(ps),
        num_kv_heads(kvh),
        head_dim(hd),
        len(length),
        max_pages((length + ps - 1) / ps),
        kc(testing::random_tensor({2 * max_pages, ps, kvh, hd}, seed)),
        vc(testing::random_tensor({2 * max_pages, ps, kvh, hd}, seed + 1)),
        key_max(testing::random_tensor({2 * max_pages, kvh, hd}, seed + 2)),  // stale junk
        key_min(testing::random_tensor({2 * max_pages, kvh, hd}, seed + 3)),
        table(size_t(2 * max_pages)) {
    std::iota(table.begin(), table.end(), 0);
    std::shuffle(table.begin(), table.end(), std::mt19937(seed));
    // kc already holds the keys; feed them to the metadata one token at a time.
    for (int32_t p = 0; p < len; ++p) {
      for (int32_t s = 0; s < 2; ++s) {
        HostTensor k({1, kvh, hd}, DType::kF32);
        const int64_t page = table[size_t(s * max_pages + p / ps)];
        for (int64_t h = 0; h < kvh; ++h) {
          for (int64_t d = 0; d < hd; ++d) {
            set_f32(k.view(), 0, h, d, get_f32(kc.view(), page, p % ps, h, d));
          }
        }
        int32_t seq[1] = {s}, pos[1] = {p};
        quest_metadata_update(key_max.view(), key_min.view(), tables(),
                              make_view(seq, DType::kI32, {1}), make_view(pos, DType::kI32, {1}),
                              k.view(), ps);
      }
    }
  }
  TensorView tables() { return make_view(table.data(), DType::kI32, {2, max_pages}); }
  int64_t page_of(int64_t seq, int64_t logical) const {
    return table[size_t(seq * max_pages + logical)];
  }
  // Slots of page `logical` holding tokens < len.
  int64_t filled(int64_t logical) const { return std::min(page_size, len - logical * page_size); }
};

TEST(QuestRef, MetadataEqualsDirectMinMax) {
  RandomScene s(/*page_size=*/4, /*kv_heads=*/2, /*head_dim=*/8, /*len=*/23, 11);
  for (int64_t seq = 0; seq < 2; ++seq) {
    for (int64_t lp = 0; lp < s.max_pages; ++lp) {
      const int64_t page = s.page_of(seq, lp);
      for (int64_t h = 0; h < s.num_kv_heads; ++h) {
        for (int64_t d = 0; d < s.head_dim; ++d) {
          float mx = -INFINITY, mn = INFINITY;
          for (int64_t slot = 0; slot < s.filled(lp); ++slot) {
            mx = std::max(mx, get_f32(s.kc.view(), page, slot, h, d));
            mn = std::min(mn, get_f32(s.kc.view(), page, slot, h, d));
          }
          EXPECT_EQ(get_f32(s.key_max.view(), page, h, d), mx) << "page " << lp;
          EXPECT_EQ(get_f32(s.key_min.view(), page, h, d), mn) << "page " << lp;
        }
      }
    }
  }
}

TEST(QuestRef, BatchedUpdateEqualsOneByOne) {
  RandomScene s(4, 2, 8, 23, 21);
  // The same keys in one call: seq 1's 23 tokens then seq 0's, each in position order.
  HostTensor key_max({2 * s.max_pages, 2, 8}, DType::kF32),
      key_min({2 * s.max_pages, 2, 8}, DType::kF32);
  HostTensor k({2 * s.len, 2, 8}, DType::kF32);
  std::vector<int32_t> seq, pos;
  for (int32_t sq : {1, 0}) {
    for (int32_t p = 0; p < s.len; ++p) {
      const int64_t t = int64_t(seq.size());
      seq.push_back(sq);
      pos.push_back(p);
      for (int64_t h = 0; h < 2; ++h) {
        for (int64_t d = 0; d < 8; ++d) {
          set_f32(k.view(), t, h, d, get_f32(s.kc.view(), s.page_of(sq, p / 4), p % 4, h, d));
        }
      }
    }
  }
  quest_metadata_update(key_max.view(), key_min.view(), s.tables(),
                        make_view(seq.data(), DType::kI32, {2 * s.len}),
                        make_view(pos.data(), DType::kI32, {2 * s.len}), k.view(), 4);
  EXPECT_TRUE(testing::all_close(testing::to_vector(key_max.view()),
                                 testing::to_vector(s.key_max.view()), 0, 0));
  EXPECT_TRUE(testing::all_close(testing::to_vector(key_min.view()),
                                 testing::to_vector(s.key_min.view()), 0, 0));
}

// U >= q.k for every key of every scored page, over many random queries; pages from the
// current one on are untouched.
TEST(QuestRef, PageScoreBoundsEveryKey) {
  RandomScene s(/*page_size=*/16, /*kv_heads=*/2, /*head_dim=*/32, /*len=*/150, 31);
  const int64_t num_heads = 8, group = num_heads / s.num_kv_heads;
  const float sentinel = 12345;
  int64_t checked = 0;
  for (uint32_t trial = 0; trial < 20; ++trial) {
    int32_t seq[1] = {int32_t(trial % 2)}, pos[1] = {int32_t(s.len - 1 - trial)};
    const HostTensor q = testing::random_tensor({1, num_heads, s.head_dim}, 100 + trial);
    HostTensor out({1, num_heads, s.max_pages}, DType::kF32);
    for (int64_t i = 0; i < num_heads * s.max_pages; ++i) out.view().data_as<float>()[i] = sentinel;
    quest_page_scores(out.view(), q.view(), s.key_max.view(), s.key_min.view(), s.tables(),
                      make_view(seq, DType::kI32, {1}), make_view(pos, DType::kI32, {1}), 16);
    const int64_t full = pos[0] / 16;
    for (int64_t h = 0; h < num_heads; ++h) {
      for (int64_t lp = 0; lp < s.max_pages; ++lp) {
        const float u = get_f32(out.view(), 0, h, lp);
        if (lp >= full) {
          EXPECT_EQ(u, sentinel) << "page " << lp << " is not a full page before the current";
          continue;
        }
        double best = -INFINITY;
        for (int64_t slot = 0; slot < 16; ++slot) {
          double dot = 0;
          for (int64_t d = 0; d < s.head_dim; ++d) {
            dot += double(get_f32(q.view(), 0, h, d)) *
                   get_f32(s.kc.view(), s.page_of(seq[0], lp), slot, h / group, d);
          }
          best = std::max(best, dot);
        }
        EXPECT_GE(double(u), best - 1e-5 * std::fabs(best)) << "head " << h << " page " << lp;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 1000);
}

TEST(QuestRef, PageScoreIsExactForOneTokenPages) {
  // page_size 1: max = min = k, so U = sum_i q_i k_i = q.k.
  RandomScene s(/*page_size=*/1, /*kv_heads=*/1, /*head_dim=*/16, /*len=*/9, 41);
  const HostTensor q = testing::random_tensor({1, 2, 16}, 42);
  HostTensor out({1, 2, s.max_pages}, DType::kF32);
  int32_t seq[1] = {1}, pos[1] = {8};
  quest_page_scores(out.view(), q.view(), s.key_max.view(), s.key_min.view(), s.tables(),
                    make_view(seq, DType::kI32, {1}), make_view(pos, DType::kI32, {1}), 1);
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t lp = 0; lp < 8; ++lp) {
      double dot = 0;
      for (int64_t d = 0; d < 16; ++d) {
        dot += double(get_f32(q.view(), 0, h, d)) * get_f32(s.kc.view(), s.page_of(1, lp), 0, 0, d);
      }
      EXPECT_NEAR(get_f32(out.view(), 0, h, lp), dot, 1e-5 * (1 + std::fabs(dot)));
    }
  }
}

// Metamorphic: choosing every page up to the current one and gathering their positions is
// dense attention.
TEST(QuestRef, AllPagesExpandToDenseAttention) {
  RandomScene s(/*page_size=*/4, /*kv_heads=*/2, /*head_dim=*/8, /*len=*/23, 51);
  const int64_t num_heads = 4, num_tokens = 2, budget_pages = s.max_pages;
  int32_t seq[2] = {0, 1}, pos[2] = {22, 13};
  std::vector<int32_t> pages(size_t(num_tokens * budget_pages), -1), page_counts;
  for (int64_t t = 0; t < num_tokens; ++t) {
    page_counts.push_back(pos[t] / 4 + 1);
    for (int32_t lp = 0; lp <= pos[t] / 4; ++lp) pages[size_t(t * budget_pages + lp)] = lp;
  }
  HostTensor idx({num_tokens, 1, budget_pages * 4}, DType::kI32),
      counts({num_tokens, 1}, DType::kI32);
  expand_pages(idx.view(), counts.view(),
               make_view(pages.data(), DType::kI32, {num_tokens, 1, budget_pages}),
               make_view(page_counts.data(), DType::kI32, {num_tokens, 1}),
               make_view(pos, DType::kI32, {num_tokens}), 4);
  EXPECT_EQ(ints(counts), (std::vector<int32_t>{23, 14}));

  const HostTensor q = testing::random_tensor({num_tokens, num_heads, 8}, 52);
  HostTensor got({num_tokens, num_heads, 8}, DType::kF32),
      want({num_tokens, num_heads, 8}, DType::kF32);
  GatherAttentionParams g;
  g.out = got.view();
  g.q = q.view();
  g.k_cache = s.kc.view();
  g.v_cache = s.vc.view();
  g.block_tables = s.tables();
  g.seq_ids = make_view(seq, DType::kI32, {num_tokens});
  g.indices = idx.view();
  g.counts = counts.view();
  gather_attention(g);
  PagedAttentionParams d;
  d.out = want.view();
  d.q = q.view();
  d.k_cache = s.kc.view();
  d.v_cache = s.vc.view();
  d.block_tables = s.tables();
  d.seq_ids = g.seq_ids;
  d.positions = make_view(pos, DType::kI32, {num_tokens});
  ref::paged_attention(d);
  EXPECT_TRUE(testing::all_close(testing::to_vector(got.view()), testing::to_vector(want.view()),
                                 1e-6f, 1e-6f));
}

}  // namespace
}  // namespace tidal::kernels
