// SPDX-License-Identifier: Apache-2.0
// ref:: Quest ops: page bounds on append (one by one, batched, a chunk starting mid-page), the
// page-score bound, page expansion, the role / list filters, and a metamorphic check that all
// pages expanded is dense attention.
#include "kernels/quest.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/decode_attention.h"
#include "runtime/tensor_access.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

std::vector<int32_t> ints(const HostTensor& t) {
  const int32_t* p = t.view().data_as<int32_t>();
  return std::vector<int32_t>(p, p + t.view().numel());
}

TensorView i32(std::vector<int32_t>& v, std::vector<int64_t> shape) {
  return make_view(v.data(), DType::kI32, shape);
}
TensorView u8(std::vector<uint8_t>& v) {
  return make_view(v.data(), DType::kU8, {int64_t(v.size())});
}
constexpr uint8_t kQuest = uint8_t(TokenRole::kQuest);

void update(const TensorView& key_max, const TensorView& key_min, const TensorView& tables,
            const TensorView& seqs, const TensorView& positions, const TensorView& k,
            int64_t page_size) {
  QuestMetadataParams p;
  p.key_max = key_max;
  p.key_min = key_min;
  p.block_tables = tables;
  p.seq_ids = seqs;
  p.positions = positions;
  p.k = k;
  p.page_size = page_size;
  quest_metadata_update(p, Stream{});
}

void page_scores(const TensorView& out, const TensorView& q, const TensorView& key_max,
                 const TensorView& key_min, const TensorView& tables, const TensorView& seqs,
                 const TensorView& lengths, const TensorView& roles, int64_t page_size) {
  QuestPageScoresParams p;
  p.out = out;
  p.q = q;
  p.key_max = key_max;
  p.key_min = key_min;
  p.block_tables = tables;
  p.seq_ids = seqs;
  p.lengths = lengths;
  p.roles = roles;
  p.page_size = page_size;
  quest_page_scores(p, Stream{});
}

void expand(const TensorView& out, const TensorView& counts, const TensorView& pages,
            const TensorView& page_counts, const TensorView& lengths, const TensorView& lists,
            const TensorView& roles, int64_t page_size) {
  ExpandPagesParams p;
  p.positions = out;
  p.counts = counts;
  p.pages = pages;
  p.page_counts = page_counts;
  p.lengths = lengths;
  p.num_lists = lists;
  p.roles = roles;
  p.page_size = page_size;
  expand_pages(p, Stream{});
}

// One sequence, page_size 2, 1 KV head, head_dim 2, logical pages {0, 1} -> rows {1, 0}.
// Keys appended one by one: k0 = (1, -2), k1 = (3, -5), k2 = (0, 4).
struct KnownScene {
  HostTensor key_max = HostTensor::from({2, 1, 2}, {99, 99, 99, 99});  // stale values
  HostTensor key_min = HostTensor::from({2, 1, 2}, {-99, -99, -99, -99});
  std::vector<int32_t> table = {1, 0}, seq = {0};

  KnownScene() {
    const float keys[3][2] = {{1, -2}, {3, -5}, {0, 4}};
    for (int32_t p = 0; p < 3; ++p) {
      const HostTensor k = HostTensor::from({1, 1, 2}, {keys[p][0], keys[p][1]});
      std::vector<int32_t> pos = {p};
      update(key_max.view(), key_min.view(), tables(), seqs(), i32(pos, {1}), k.view(), 2);
    }
  }
  TensorView tables() { return i32(table, {1, 2}); }
  TensorView seqs() { return i32(seq, {1}); }
};

TEST(QuestRef, MetadataKnownValues) {
  KnownScene s;
  // Row 1 (logical page 0, keys k0, k1): max (3, -2), min (1, -5); the stale 99s are gone
  // because slot 0 starts the page fresh. Row 0 (logical page 1, k2 only): max = min = (0, 4).
  EXPECT_TRUE(testing::all_close(testing::to_vector(s.key_max.view()), {0, 4, 3, -2}, 0, 0));
  EXPECT_TRUE(testing::all_close(testing::to_vector(s.key_min.view()), {0, 4, 1, -5}, 0, 0));
}

TEST(QuestRef, PageScoresKnownValuesAndRoleFilter) {
  KnownScene s;
  // Token 0 (n = 3): logical page 1 is current, so only page 0 is scored; out[..., 1] keeps
  // its sentinel 7. Two query heads on the one KV head (GQA).
  // Head 0, q = (1, -2):  max(1*3, 1*1) + max(-2*-2, -2*-5) = 3 + 10 = 13 (= q.k1, the bound
  //   is tight here). Head 1, q = (-1, 1): max(-3, -1) + max(-2, -5) = -1 - 2 = -3
  //   (true max over the page: q.k0 = -3, q.k1 = -8).
  // Token 1 is the same query but kSparse: not scored.
  const HostTensor q = HostTensor::from({2, 2, 2}, {1, -2, -1, 1, 1, -2, -1, 1});
  HostTensor out = HostTensor::from({2, 2, 2}, {7, 7, 7, 7, 7, 7, 7, 7});
  std::vector<int32_t> seqs = {0, 0}, lengths = {3, 3};
  std::vector<uint8_t> roles = {kQuest, uint8_t(TokenRole::kSparse)};
  page_scores(out.view(), q.view(), s.key_max.view(), s.key_min.view(), s.tables(), i32(seqs, {2}),
              i32(lengths, {2}), u8(roles), 2);
  EXPECT_TRUE(testing::all_close(testing::to_vector(out.view()), {13, 7, -3, 7, 7, 7, 7, 7}, 0, 0));
}

TEST(QuestRef, ExpandPagesKnownValuesAndFilters) {
  // page_size 4, page budget 3, max_budget 12. Token 0 (n = 10: the current page 2 holds 8, 9):
  // list 0 = pages {0, 2} -> 0..3, 8, 9; list 1 = page {1} -> 4..7. Token 1 (n = 9: position
  // 8 is the first slot of page 2) has one list: {1, 2} -> 4..7, 8; its list 1 is untouched.
  // Token 2 is kDense: untouched.
  std::vector<int32_t> pages = {0, 2, -1, 1, -1, -1, 1, 2, -1, 2, -1, -1, 0, -1, -1, 0, -1, -1};
  std::vector<int32_t> page_counts = {2, 1, 2, 1, 1, 1}, lengths = {10, 9, 5}, lists = {2, 1, 2};
  std::vector<uint8_t> roles = {kQuest, kQuest, uint8_t(TokenRole::kDense)};
  std::vector<int32_t> out(3 * 2 * 12, 55), counts(6, 55);
  expand(i32(out, {3, 2, 12}), i32(counts, {3, 2}), i32(pages, {3, 2, 3}), i32(page_counts, {3, 2}),
         i32(lengths, {3}), i32(lists, {3}), u8(roles), 4);
  const int32_t x = -1, u = 55;
  EXPECT_EQ(out, (std::vector<int32_t>{0, 1, 2, 3, 8, 9, x, x, x, x, x, x,  //
                                       4, 5, 6, 7, x, x, x, x, x, x, x, x,  //
                                       4, 5, 6, 7, 8, x, x, x, x, x, x, x,  //
                                       u, u, u, u, u, u, u, u, u, u, u, u,  //
                                       u, u, u, u, u, u, u, u, u, u, u, u,  //
                                       u, u, u, u, u, u, u, u, u, u, u, u}));
  EXPECT_EQ(counts, (std::vector<int32_t>{6, 4, 5, u, u, u}));
}

TEST(QuestRef, BadArgumentsAreBugs) {
  std::vector<int32_t> pages = {0, 2}, page_counts = {2}, lengths = {10}, lists = {1};
  std::vector<uint8_t> roles = {kQuest};
  HostTensor out({1, 1, 8}, DType::kI32), small({1, 1, 5}, DType::kI32),
      counts({1, 1}, DType::kI32);
  auto run = [&](const HostTensor& o) {
    expand(o.view(), counts.view(), i32(pages, {1, 1, 2}), i32(page_counts, {1, 1}),
           i32(lengths, {1}), i32(lists, {1}), u8(roles), 4);
  };
  EXPECT_DEATH(run(small), "beyond max_budget");
  pages = {0, 3};
  EXPECT_DEATH(run(out), "after the current");
  pages = {0, 0};
  EXPECT_DEATH(run(out), "ascending");

  HostTensor key_max({2, 2, 4}, DType::kF32), key_min({2, 2, 4}, DType::kF32);
  std::vector<int32_t> table = {0, 1}, seq = {0}, pos = {9};
  const HostTensor k({1, 3, 4}, DType::kF32);  // 3 KV heads, metadata has 2
  EXPECT_DEATH(update(key_max.view(), key_min.view(), i32(table, {1, 2}), i32(seq, {1}),
                      i32(pos, {1}), k.view(), 4),
               "quest_metadata_update: k");
  const HostTensor q({1, 3, 4}, DType::kF32);  // 3 query heads over 2 KV heads
  HostTensor scores({1, 3, 2}, DType::kF32);
  EXPECT_DEATH(page_scores(scores.view(), q.view(), key_max.view(), key_min.view(),
                           i32(table, {1, 2}), i32(seq, {1}), i32(lengths, {1}), u8(roles), 4),
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
    for (int32_t p = 0; p < len; ++p) {
      for (int32_t s = 0; s < 2; ++s) {
        HostTensor k = key(s, p);
        std::vector<int32_t> seq = {s}, pos = {p};
        update(key_max.view(), key_min.view(), tables(), i32(seq, {1}), i32(pos, {1}), k.view(),
               ps);
      }
    }
  }
  TensorView tables() { return i32(table, {2, max_pages}); }
  int64_t page_of(int64_t seq, int64_t logical) const {
    return table[size_t(seq * max_pages + logical)];
  }
  // The key of sequence `seq` at position `pos`, [1, kvh, hd].
  HostTensor key(int64_t seq, int64_t pos) const {
    HostTensor k({1, num_kv_heads, head_dim}, DType::kF32);
    for (int64_t h = 0; h < num_kv_heads; ++h) {
      for (int64_t d = 0; d < head_dim; ++d) {
        set_f32(k.view(), 0, h, d,
                get_f32(kc.view(), page_of(seq, pos / page_size), pos % page_size, h, d));
      }
    }
    return k;
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

// Batched calls (whole sequences; then a chunk that starts mid-page after a one-by-one prefix)
// give the same bounds as one token at a time.
TEST(QuestRef, BatchedUpdateEqualsOneByOne) {
  RandomScene s(4, 2, 8, 23, 21);
  for (int32_t split : {0, 10}) {  // seq 0 positions < split go one by one first; 10 % 4 = 2
    HostTensor key_max = testing::random_tensor({2 * s.max_pages, 2, 8}, 5),
               key_min = testing::random_tensor({2 * s.max_pages, 2, 8}, 6);
    for (int32_t p = 0; p < split; ++p) {
      std::vector<int32_t> seq = {0}, pos = {p};
      const HostTensor k = s.key(0, p);
      update(key_max.view(), key_min.view(), s.tables(), i32(seq, {1}), i32(pos, {1}), k.view(), 4);
    }
    // One call: seq 1's tokens, then seq 0's from `split`, each in position order.
    std::vector<int32_t> seq, pos;
    std::vector<float> keys;
    for (int32_t sq : {1, 0}) {
      for (int32_t p = sq == 0 ? split : 0; p < s.len; ++p) {
        seq.push_back(sq);
        pos.push_back(p);
        const std::vector<float> k = testing::to_vector(s.key(sq, p).view());
        keys.insert(keys.end(), k.begin(), k.end());
      }
    }
    const int64_t n = int64_t(seq.size());
    const HostTensor k = HostTensor::from({n, 2, 8}, keys);
    update(key_max.view(), key_min.view(), s.tables(), i32(seq, {n}), i32(pos, {n}), k.view(), 4);
    EXPECT_TRUE(testing::all_close(testing::to_vector(key_max.view()),
                                   testing::to_vector(s.key_max.view()), 0, 0))
        << "split " << split;
    EXPECT_TRUE(testing::all_close(testing::to_vector(key_min.view()),
                                   testing::to_vector(s.key_min.view()), 0, 0))
        << "split " << split;
  }
}

// U >= q.k for every key of every scored page, over many random queries; pages from the
// current one on are untouched.
TEST(QuestRef, PageScoreBoundsEveryKey) {
  RandomScene s(/*page_size=*/16, /*kv_heads=*/2, /*head_dim=*/32, /*len=*/150, 31);
  const int64_t num_heads = 8, group = num_heads / s.num_kv_heads;
  const float sentinel = 12345;
  int64_t checked = 0;
  for (uint32_t trial = 0; trial < 20; ++trial) {
    std::vector<int32_t> seq = {int32_t(trial % 2)}, lengths = {int32_t(s.len - trial)};
    std::vector<uint8_t> roles = {kQuest};
    const HostTensor q = testing::random_tensor({1, num_heads, s.head_dim}, 100 + trial);
    HostTensor out({1, num_heads, s.max_pages}, DType::kF32);
    for (int64_t i = 0; i < num_heads * s.max_pages; ++i) out.view().data_as<float>()[i] = sentinel;
    page_scores(out.view(), q.view(), s.key_max.view(), s.key_min.view(), s.tables(), i32(seq, {1}),
                i32(lengths, {1}), u8(roles), 16);
    const int64_t full = (lengths[0] - 1) / 16;
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
  std::vector<int32_t> seq = {1}, lengths = {9};
  std::vector<uint8_t> roles = {kQuest};
  page_scores(out.view(), q.view(), s.key_max.view(), s.key_min.view(), s.tables(), i32(seq, {1}),
              i32(lengths, {1}), u8(roles), 1);
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

// Metamorphic: choosing every page up to the current one and attending over their positions
// is dense attention.
TEST(QuestRef, AllPagesExpandToDenseAttention) {
  RandomScene s(/*page_size=*/4, /*kv_heads=*/2, /*head_dim=*/8, /*len=*/23, 51);
  const int64_t num_heads = 4, num_tokens = 2, budget_pages = s.max_pages;
  std::vector<int32_t> seq = {0, 1}, lengths = {23, 14}, lists = {1, 1};
  std::vector<int32_t> pages(size_t(num_tokens * budget_pages), -1), page_counts;
  for (int64_t t = 0; t < num_tokens; ++t) {
    page_counts.push_back((lengths[size_t(t)] - 1) / 4 + 1);
    for (int32_t lp = 0; lp < page_counts.back(); ++lp) pages[size_t(t * budget_pages + lp)] = lp;
  }
  std::vector<uint8_t> quest = {kQuest, kQuest}, dense(2, uint8_t(TokenRole::kDense));
  HostTensor idx({num_tokens, 1, budget_pages * 4}, DType::kI32),
      counts({num_tokens, 1}, DType::kI32);
  expand(idx.view(), counts.view(), i32(pages, {num_tokens, 1, budget_pages}),
         i32(page_counts, {num_tokens, 1}), i32(lengths, {num_tokens}), i32(lists, {num_tokens}),
         u8(quest), 4);
  EXPECT_EQ(ints(counts), (std::vector<int32_t>{23, 14}));

  const HostTensor q = testing::random_tensor({num_tokens, num_heads, 8}, 52);
  HostTensor got({num_tokens, num_heads, 8}, DType::kF32),
      want({num_tokens, num_heads, 8}, DType::kF32);
  DecodeAttentionParams d;
  d.q = q.view();
  d.k_cache = s.kc.view();
  d.v_cache = s.vc.view();
  d.block_tables = s.tables();
  d.seq_ids = i32(seq, {num_tokens});
  d.lengths = i32(lengths, {num_tokens});
  d.indices = idx.view();
  d.counts = counts.view();
  d.num_lists = i32(lists, {num_tokens});
  d.out = got.view();
  d.roles = u8(quest);
  ref::decode_attention(d);
  d.out = want.view();
  d.roles = u8(dense);
  ref::decode_attention(d);
  EXPECT_TRUE(testing::all_close(testing::to_vector(got.view()), testing::to_vector(want.view()),
                                 1e-6f, 1e-6f));
}

}  // namespace
}  // namespace tidal::kernels
