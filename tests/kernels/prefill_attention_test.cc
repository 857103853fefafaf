// SPDX-License-Identifier: Apache-2.0
// prefill_attention's ref:: twin on hand-computed values: the causal mask, GQA mapping, a chunk
// that continues a cached context, several sequences in one call, and inconsistent inputs.
#include "kernels/prefill_attention.h"

#include <cmath>
#include <vector>

#include "runtime/tensor_access.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

// One KV head, head_dim 2, page_size 2; the sequence's 3 positions live in pages {1, 0}.
// Keys k0 = (1, 0), k1 = (0, 1), k2 = (1, 1); values v_j = (j, 10 j).
struct Fixture {
  HostTensor kc{{2, 2, 1, 2}, DType::kF32};
  HostTensor vc{{2, 2, 1, 2}, DType::kF32};
  int32_t table[2] = {1, 0};

  Fixture() {
    const float keys[3][2] = {{1, 0}, {0, 1}, {1, 1}};
    for (int j = 0; j < 3; ++j) {
      const int page = table[j / 2], slot = j % 2;
      for (int d = 0; d < 2; ++d) set_f32(kc.view(), page, slot, 0, d, keys[j][d]);
      set_f32(vc.view(), page, slot, 0, 0, float(j));
      set_f32(vc.view(), page, slot, 0, 1, float(10 * j));
    }
  }
};

// A one-sequence call over `q` (its rows are the last q.size(0) of `context` positions).
struct Call {
  int32_t starts[2] = {0, 0};
  int32_t seq[1] = {0};
  int32_t ctx[1] = {0};
  PrefillAttentionParams p;

  Call(const Fixture& f, const HostTensor& q, const HostTensor& out, int32_t context) {
    starts[1] = int32_t(q.shape()[0]);
    ctx[0] = context;
    p.out = out.view();
    p.q = q.view();
    p.k_cache = f.kc.view();
    p.v_cache = f.vc.view();
    p.block_tables = make_view(const_cast<int32_t*>(f.table), DType::kI32, {1, 2});
    p.query_starts = make_view(starts, DType::kI32, {2});
    p.seq_ids = make_view(seq, DType::kI32, {1});
    p.context_lens = make_view(ctx, DType::kI32, {1});
    p.max_query_len = starts[1];
  }
};

// Position 2, head 0, q = (sqrt 2, 0): scores q.k / sqrt 2 = {1, 0, 1}, weights e, 1, e over
// 2e + 1; the output is (v0, 10 v0).
double position2_head0() {
  const double e = std::exp(1.0);
  return (0 * e + 1 * 1 + 2 * e) / (2 * e + 1);
}

TEST(PrefillAttentionRef, KnownValuesWithCausalMaskAndGqa) {
  Fixture f;
  // A whole 3-token prompt, 2 query heads sharing the KV head: rows are positions 0, 1, 2.
  const HostTensor q = HostTensor::from({3, 2, 2}, {5, 5, 1, 1,                  // position 0
                                                    0, 0, 0, 0,                  // position 1
                                                    std::sqrt(2.0f), 0, 0, 0});  // position 2
  HostTensor out({3, 2, 2}, DType::kF32);
  Call c(f, q, out, 3);
  prefill_attention(c.p, Stream{});
  // Position 0 sees only key 0 -> v0 = (0, 0) whatever q is. Position 1, q = 0: uniform over keys
  // 0, 1 -> (0.5, 5). Position 2: head 0 as above; head 1 (q = 0) the mean (1, 10).
  const double v0 = position2_head0();
  const std::vector<float> want = {0, 0, 0, 0, 0.5f, 5, 0.5f, 5, float(v0), float(10 * v0), 1, 10};
  EXPECT_TRUE(testing::all_close(testing::to_vector(out.view()), want, 1e-6f, 1e-6f));
}

TEST(PrefillAttentionRef, ChunkContinuesACachedContext) {
  Fixture f;
  // Positions 0, 1 were prefilled earlier; this chunk is the single query at position 2.
  const HostTensor q = HostTensor::from({1, 2, 2}, {std::sqrt(2.0f), 0, 0, 0});
  HostTensor out({1, 2, 2}, DType::kF32);
  Call c(f, q, out, 3);
  prefill_attention(c.p, Stream{});
  const double v0 = position2_head0();
  EXPECT_TRUE(testing::all_close(testing::to_vector(out.view()), {float(v0), float(10 * v0), 1, 10},
                                 1e-6f, 1e-6f));
  // The same query with context 2 sits at position 1 and no longer sees key 2: scores {1, 0}.
  Call c2(f, q, out, 2);
  prefill_attention(c2.p, Stream{});
  const double w1 = 1 / (std::exp(1.0) + 1);  // weight of key 1
  EXPECT_TRUE(testing::all_close(testing::to_vector(out.view()),
                                 {float(w1), float(10 * w1), 0.5f, 5}, 1e-6f, 1e-6f));
}

TEST(PrefillAttentionRef, ExplicitScale) {
  Fixture f;
  // Scale ln 2 on q = (1, 0) at position 1: scores {ln 2, 0}, weights 2/3 and 1/3 -> v = 1/3.
  const HostTensor q = HostTensor::from({1, 2, 2}, {1, 0, 1, 0});
  HostTensor out({1, 2, 2}, DType::kF32);
  Call c(f, q, out, 2);
  c.p.scale = float(std::log(2.0));
  prefill_attention(c.p, Stream{});
  const float t = 1.0f / 3;
  EXPECT_TRUE(
      testing::all_close(testing::to_vector(out.view()), {t, 10 * t, t, 10 * t}, 1e-6f, 1e-6f));
}

TEST(PrefillAttentionRef, GqaMapsQueryHeadsToTheirKvHead) {
  // 4 query heads over 2 KV heads (group 2), head_dim 1, one page of 4 slots. With one cached
  // position the softmax has a single key, so every head returns its KV head's value exactly.
  HostTensor kc({1, 4, 2, 1}, DType::kF32), vc({1, 4, 2, 1}, DType::kF32);
  set_f32(vc.view(), 0, 0, 0, 0, 7.0f);   // KV head 0
  set_f32(vc.view(), 0, 0, 1, 0, -3.0f);  // KV head 1
  int32_t table[1] = {0}, starts[2] = {0, 1}, seq[1] = {0}, ctx[1] = {1};
  const HostTensor q = HostTensor::from({1, 4, 1}, {1, 2, 3, 4});
  HostTensor out({1, 4, 1}, DType::kF32);
  PrefillAttentionParams p;
  p.out = out.view();
  p.q = q.view();
  p.k_cache = kc.view();
  p.v_cache = vc.view();
  p.block_tables = make_view(table, DType::kI32, {1, 1});
  p.query_starts = make_view(starts, DType::kI32, {2});
  p.seq_ids = make_view(seq, DType::kI32, {1});
  p.context_lens = make_view(ctx, DType::kI32, {1});
  p.max_query_len = 1;
  prefill_attention(p, Stream{});
  EXPECT_TRUE(testing::all_close(testing::to_vector(out.view()), {7, 7, -3, -3}, 0, 0));
}

TEST(PrefillAttentionRef, SeveralSequencesMatchSeparateCalls) {
  // Three sequences in one call (block-table rows 2, 0, 1; 1, 4 and 3 queries after 4, 0 and 5
  // cached positions), page_size 3, 2 query heads over 1 KV head, head_dim 4: each sequence's
  // rows equal a call with that sequence alone.
  const int64_t pages = 12, page_size = 3, heads = 2, dim = 4;
  const HostTensor kc = testing::random_tensor({pages, page_size, 1, dim}, 1);
  const HostTensor vc = testing::random_tensor({pages, page_size, 1, dim}, 2);
  int32_t table[3][4] = {{4, 9, 1, 0}, {11, 3, 7, 2}, {6, 10, 5, 8}};
  int32_t starts[4] = {0, 1, 5, 8}, seq[3] = {2, 0, 1}, ctx[3] = {5, 4, 8};
  const HostTensor q = testing::random_tensor({8, heads, dim}, 3);
  HostTensor out({8, heads, dim}, DType::kF32);
  PrefillAttentionParams p;
  p.out = out.view();
  p.q = q.view();
  p.k_cache = kc.view();
  p.v_cache = vc.view();
  p.block_tables = make_view(table, DType::kI32, {3, 4});
  p.query_starts = make_view(starts, DType::kI32, {4});
  p.seq_ids = make_view(seq, DType::kI32, {3});
  p.context_lens = make_view(ctx, DType::kI32, {3});
  p.max_query_len = 4;
  prefill_attention(p, Stream{});
  const std::vector<float> all = testing::to_vector(out.view());
  for (int i = 0; i < 3; ++i) {
    const int64_t n = starts[i + 1] - starts[i];
    HostTensor one({n, heads, dim}, DType::kF32);
    int32_t s1[2] = {0, int32_t(n)};
    PrefillAttentionParams p1 = p;
    p1.out = one.view();
    p1.q = q.view().slice(starts[i], starts[i + 1]);
    p1.query_starts = make_view(s1, DType::kI32, {2});
    p1.seq_ids = make_view(&seq[i], DType::kI32, {1});
    p1.context_lens = make_view(&ctx[i], DType::kI32, {1});
    prefill_attention(p1, Stream{});
    const std::vector<float> got(all.begin() + starts[i] * heads * dim,
                                 all.begin() + starts[i + 1] * heads * dim);
    EXPECT_TRUE(testing::all_close(got, testing::to_vector(one.view()), 0, 0)) << "sequence " << i;
  }
  // Sequence 1's first row sits at position 0: it sees key 0 only, so it returns v at position 0
  // (page table[0][0] = 4, slot 0) under both heads.
  for (int h = 0; h < heads; ++h) {
    for (int d = 0; d < dim; ++d) {
      EXPECT_FLOAT_EQ(all[(1 * heads + h) * dim + d], get_f32(vc.view(), 4, 0, 0, d));
    }
  }
}

TEST(PrefillAttentionRef, MoreQueriesThanContextIsABug) {
  Fixture f;
  const HostTensor q = HostTensor::from({3, 2, 2}, std::vector<float>(12, 1.0f));
  HostTensor out({3, 2, 2}, DType::kF32);
  Call c(f, q, out, 2);  // 3 queries cannot be the last positions of a 2-position context
  EXPECT_DEATH(prefill_attention(c.p, Stream{}), "inconsistent");
  Call c2(f, q, out, 3);
  c2.p.max_query_len = 2;  // max_query_len below a sequence's query count
  EXPECT_DEATH(prefill_attention(c2.p, Stream{}), "inconsistent");
}

}  // namespace
}  // namespace tidal::kernels
