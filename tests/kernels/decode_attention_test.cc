// SPDX-License-Identifier: Apache-2.0
#include "kernels/decode_attention.h"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/paged_kv_common.h"
#include "runtime/tensor_access.h"
#include "tests/kernels/attention_batch.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

using testing_attention::AttentionBatch;
using testing_attention::AttentionShape;
using testing_attention::TokenPlan;

// One sequence, 2 query heads sharing 1 KV head (GQA), head_dim 2, page_size 2, pages {1, 0}.
// Keys k0 = (1, 0), k1 = (0, 1), k2 = (1, 1); values v_j = (j, 10 j).
struct Fixture {
  HostTensor kc{{2, 2, 1, 2}, DType::kF32};
  HostTensor vc{{2, 2, 1, 2}, DType::kF32};
  int32_t table[2] = {1, 0};
  int32_t seq[2] = {0, 0}, num_lists[2] = {0, 0};
  int32_t indices[2][2][3] = {};  // [token, list, budget]
  int32_t counts[2][2] = {};

  Fixture() {
    const float keys[3][2] = {{1, 0}, {0, 1}, {1, 1}};
    for (int j = 0; j < 3; ++j) {
      const int page = table[j / 2], slot = j % 2;
      for (int d = 0; d < 2; ++d) set_f32(kc.view(), page, slot, 0, d, keys[j][d]);
      set_f32(vc.view(), page, slot, 0, 0, float(j));
      set_f32(vc.view(), page, slot, 0, 1, float(10 * j));
    }
  }

  DecodeAttentionParams params(const HostTensor& q, HostTensor& out, int32_t* lengths,
                               uint8_t* roles) {
    DecodeAttentionParams p;
    p.out = out.view();
    p.q = q.view();
    p.k_cache = kc.view();
    p.v_cache = vc.view();
    p.block_tables = make_view(table, DType::kI32, {1, 2});
    p.seq_ids = make_view(seq, DType::kI32, {2});
    p.lengths = make_view(lengths, DType::kI32, {2});
    p.roles = make_view(roles, DType::kU8, {2});
    p.indices = make_view(indices, DType::kI32, {2, 2, 3});
    p.counts = make_view(counts, DType::kI32, {2, 2});
    p.num_lists = make_view(num_lists, DType::kI32, {2});
    return p;
  }
};

TEST(DecodeAttentionRef, DenseRowsKnownValuesLogitsOnlyWhenSelecting) {
  Fixture f;
  // Token 0 selects over n = 3; token 1 is dense over n = 1.
  const HostTensor q = HostTensor::from({2, 2, 2}, {std::sqrt(2.0f), 0, 0, 0,  //
                                                    5, 5, 1, 1});
  HostTensor out({2, 2, 2}, DType::kF32);
  int32_t lengths[2] = {3, 1};
  uint8_t roles[2] = {uint8_t(TokenRole::kSelect), uint8_t(TokenRole::kDense)};
  DecodeAttentionParams p = f.params(q, out, lengths, roles);
  HostTensor logits = HostTensor::from({2, 2, 4}, std::vector<float>(16, 7.0f));
  HostTensor lse({2, 2}, DType::kF32);
  p.logits = logits.view();
  p.lse = lse.view();
  decode_attention(p, TensorView{}, Stream{});
  // Token 0: head 0 scores q.k / sqrt 2 = {1, 0, 1}; head 1 (q = 0) {0, 0, 0}. Position 3 and
  // the dense token 1 keep the sentinel 7.
  EXPECT_TRUE(testing::all_close(testing::to_vector(logits.view()),
                                 {1, 0, 1, 7, 0, 0, 0, 7, 7, 7, 7, 7, 7, 7, 7, 7}, 1e-6f, 1e-6f));
  // Head 0 weights e/(2e+1), 1/(2e+1), e/(2e+1); head 1 uniform -> mean (1, 10); token 1 sees
  // only key 0 -> value (0, 0).
  const double e = std::exp(1.0), z = 2 * e + 1;
  const double v0 = (0 * e + 1 * 1 + 2 * e) / z;
  EXPECT_TRUE(testing::all_close(testing::to_vector(out.view()),
                                 {float(v0), float(10 * v0), 1, 10, 0, 0, 0, 0}, 1e-6f, 1e-6f));
  // lse = log sum exp of the row's scores.
  const double r = 1 / std::sqrt(2.0);
  EXPECT_TRUE(testing::all_close(testing::to_vector(lse.view()),
                                 {float(std::log(z)), float(std::log(3.0)), float(5 * r), float(r)},
                                 1e-6f, 1e-6f));
}

TEST(DecodeAttentionRef, ListRowsKnownValuesPerHeadAndShared) {
  Fixture f;
  // Token 0 (kSparse, L = 2 = num_heads): head 0 list {0, 2}, head 1 list {1, 2}.
  //   Head 0: q = (sqrt 2, 0): scores {1, 1} -> mean of v0, v2 = (1, 10).
  //   Head 1: q = (sqrt 2 ln 3, 0): scores {0, ln 3} -> 1/4 v1 + 3/4 v2 = (1.75, 17.5).
  // Token 1 (kQuest, L = 1): both heads read list {1}: v1 = (1, 10) exactly.
  const float s2 = std::sqrt(2.0f), ln3 = float(std::log(3.0));
  const HostTensor q = HostTensor::from({2, 2, 2}, {s2, 0, s2 * ln3, 0, 3, -1, 0, 2});
  HostTensor out({2, 2, 2}, DType::kF32);
  int32_t lengths[2] = {3, 2};
  uint8_t roles[2] = {uint8_t(TokenRole::kSparse), uint8_t(TokenRole::kQuest)};
  const int32_t padded[2][2][3] = {{{0, 2, -1}, {1, 2, -1}}, {{1, -1, -1}, {-1, -1, -1}}};
  std::memcpy(f.indices, padded, sizeof(padded));
  f.counts[0][0] = f.counts[0][1] = 2;
  f.counts[1][0] = 1;
  f.counts[1][1] = -3;  // unused list: never read
  f.num_lists[0] = 2;
  f.num_lists[1] = 1;
  DecodeAttentionParams p = f.params(q, out, lengths, roles);
  HostTensor lse({2, 2}, DType::kF32);
  p.lse = lse.view();
  decode_attention(p, TensorView{}, Stream{});
  EXPECT_TRUE(testing::all_close(testing::to_vector(out.view()),
                                 {1, 10, 1.75f, 17.5f, 1, 10, 1, 10}, 1e-6f, 1e-6f));
  // lse: head 0 log(2e), head 1 log(1 + 3); token 1: the single score q.k1 / sqrt 2.
  EXPECT_TRUE(testing::all_close(testing::to_vector(lse.view()),
                                 {float(1 + std::log(2.0)), float(std::log(4.0)),
                                  float(-1 / std::sqrt(2.0)), float(2 / std::sqrt(2.0))},
                                 1e-6f, 1e-6f));

  // An explicit scale: head 1's scores become {0, 1}: weights {1, e} / (1 + e).
  p.scale = float(1 / (std::sqrt(2.0) * std::log(3.0)));
  decode_attention(p, TensorView{}, Stream{});
  const double e = std::exp(1.0), w2 = e / (1 + e);
  const float v1 = float((1 - w2) * 1 + w2 * 2);
  EXPECT_NEAR(get_f32(out.view(), 0, 1, 0), v1, 1e-6);
  EXPECT_NEAR(get_f32(out.view(), 0, 1, 1), 10 * v1, 1e-5);
}

TEST(DecodeAttentionRef, BadPlansAreBugs) {
  Fixture f;
  const HostTensor q({2, 2, 2}, DType::kF32);
  HostTensor out({2, 2, 2}, DType::kF32);
  int32_t lengths[2] = {3, 2};
  uint8_t roles[2] = {uint8_t(TokenRole::kSparse), uint8_t(TokenRole::kDense)};
  f.counts[0][0] = 1;
  f.counts[0][1] = 1;
  DecodeAttentionParams p = f.params(q, out, lengths, roles);
  f.num_lists[0] = 3;  // does not divide 2 heads (and exceeds max_lists)
  EXPECT_DEATH(decode_attention(p, TensorView{}, Stream{}), "num_lists must divide");
  f.num_lists[0] = 2;
  f.counts[0][1] = 0;
  EXPECT_DEATH(decode_attention(p, TensorView{}, Stream{}), "count outside");
  f.counts[0][1] = 1;
  f.indices[0][1][0] = 3;  // position n
  EXPECT_DEATH(decode_attention(p, TensorView{}, Stream{}), "list position outside");
  f.indices[0][1][0] = 0;
  roles[1] = uint8_t(TokenRole::kReselect);  // selecting without logits
  EXPECT_DEATH(decode_attention(p, TensorView{}, Stream{}), "needs logits");
  roles[1] = uint8_t(TokenRole::kDense);
  lengths[1] = 0;
  EXPECT_DEATH(decode_attention(p, TensorView{}, Stream{}), "lengths must be >= 1");
}

struct Case {
  std::string name;
  AttentionShape shape;
};

class DecodeAttentionProperty : public ::testing::TestWithParam<Case> {};

// Runs the reference over tokens [t0, t1) of `b` and returns (out, lse, logits) as vectors.
struct Result {
  std::vector<float> out, lse, logits;
};
Result run(const AttentionBatch& b, int64_t t0, int64_t t1) {
  const AttentionShape& s = b.shape;
  HostTensor out({t1 - t0, s.num_heads, s.head_dim}, DType::kF32);
  HostTensor lse({t1 - t0, s.num_heads}, DType::kF32);
  HostTensor logits =
      HostTensor::from({t1 - t0, s.num_heads, b.max_len},
                       std::vector<float>(size_t((t1 - t0) * s.num_heads * b.max_len), -123.0f));
  DecodeAttentionParams p = b.params(t0, t1);
  p.out = out.view();
  p.lse = lse.view();
  p.logits = logits.view();
  decode_attention(p, TensorView{}, Stream{});
  return {testing::to_vector(out.view()), testing::to_vector(lse.view()),
          testing::to_vector(logits.view())};
}

TEST_P(DecodeAttentionProperty, MixedBatchEqualsEachTokenAlone) {
  const AttentionShape& s = GetParam().shape;
  const int32_t h = int32_t(s.num_heads), kvh = int32_t(s.num_kv_heads);
  const AttentionBatch b(s,
                         {{TokenRole::kDense, 1},
                          {TokenRole::kSelect, 37},
                          {TokenRole::kReselect, 17},
                          {TokenRole::kSparse, 40, h, 7},
                          {TokenRole::kSparse, 33, kvh, 5},
                          {TokenRole::kQuest, 50, 1, 16},
                          {TokenRole::kDense, 23}},
                         11);
  const Result all = run(b, 0, b.num_tokens);
  const size_t out_row = size_t(s.num_heads * s.head_dim), lse_row = size_t(s.num_heads),
               logit_row = size_t(s.num_heads * b.max_len);
  for (int64_t t = 0; t < b.num_tokens; ++t) {
    const Result one = run(b, t, t + 1);
    auto part = [&](const std::vector<float>& v, size_t row) {
      return std::vector<float>(v.begin() + int64_t(t * row), v.begin() + int64_t((t + 1) * row));
    };
    EXPECT_TRUE(testing::all_close(one.out, part(all.out, out_row), 0, 0)) << "token " << t;
    EXPECT_TRUE(testing::all_close(one.lse, part(all.lse, lse_row), 0, 0)) << "token " << t;
    EXPECT_TRUE(testing::all_close(one.logits, part(all.logits, logit_row), 0, 0)) << "token " << t;
  }
}

TEST_P(DecodeAttentionProperty, LogitsOnlyForSelectingTokensAndLseIsTheirLogSumExp) {
  const AttentionShape& s = GetParam().shape;
  const AttentionBatch b(s,
                         {{TokenRole::kSelect, 29},
                          {TokenRole::kDense, 31},
                          {TokenRole::kReselect, 9},
                          {TokenRole::kSparse, 31, 1, 4}},
                         12);
  const Result r = run(b, 0, b.num_tokens);
  for (int64_t t = 0; t < b.num_tokens; ++t) {
    const bool selecting = is_selecting(TokenRole(b.roles[size_t(t)]));
    const int64_t n = b.lengths[size_t(t)];
    for (int64_t h = 0; h < s.num_heads; ++h) {
      double sum = 0;
      for (int64_t j = 0; j < b.max_len; ++j) {
        const float v = r.logits[size_t((t * s.num_heads + h) * b.max_len + j)];
        if (selecting && j < n) {
          sum += std::exp(double(v));
        } else {
          ASSERT_EQ(v, -123.0f) << "token " << t << " head " << h << " position " << j;
        }
      }
      if (selecting) {
        EXPECT_NEAR(r.lse[size_t(t * s.num_heads + h)], std::log(sum), 1e-5)
            << "token " << t << " head " << h;
      }
    }
  }
}

// With logits16, a selecting token whose lists a group of heads shares (L < H) writes each logit
// there as the f16 of the f32 one it would write otherwise, and nothing into logits; tokens of
// one list a head (L = H) write logits as before and nothing into logits16. Out and lse as
// without it.
TEST_P(DecodeAttentionProperty, GroupListTokensWriteF16Logits) {
  const AttentionShape& s = GetParam().shape;
  const int32_t h = int32_t(s.num_heads), kvh = int32_t(s.num_kv_heads);
  const AttentionBatch b(s,
                         {{TokenRole::kSelect, 29, kvh},
                          {TokenRole::kReselect, 9, 1},
                          {TokenRole::kSelect, 31, h},
                          {TokenRole::kDense, 12},
                          {TokenRole::kSparse, 31, 1, 4}},
                         13);
  const Result plain = run(b, 0, b.num_tokens);
  const int64_t count = b.num_tokens * s.num_heads * b.max_len;
  HostTensor out({b.num_tokens, s.num_heads, s.head_dim}, DType::kF32);
  HostTensor lse({b.num_tokens, s.num_heads}, DType::kF32);
  HostTensor logits =
      HostTensor::from({b.num_tokens, s.num_heads, b.max_len}, std::vector<float>(count, -123.0f));
  HostTensor logits16({b.num_tokens, s.num_heads, b.max_len}, DType::kF16);
  for (int64_t i = 0; i < count; ++i) static_cast<f16*>(logits16.view().data)[i] = f32_to_f16(-123.0f);
  DecodeAttentionParams p = b.params(0, b.num_tokens);
  p.out = out.view();
  p.lse = lse.view();
  p.logits = logits.view();
  p.logits16 = logits16.view();
  decode_attention(p, TensorView{}, Stream{});
  EXPECT_TRUE(testing::all_close(testing::to_vector(out.view()), plain.out, 0, 0));
  EXPECT_TRUE(testing::all_close(testing::to_vector(lse.view()), plain.lse, 0, 0));
  const std::vector<float> got = testing::to_vector(logits.view());
  const std::vector<float> got16 = testing::to_vector(logits16.view());
  // The f16 of each plain logit (to nearest even), as a float.
  std::vector<float> plain16;
  for (float v : plain.logits) plain16.push_back(f16_to_f32(f32_to_f16(v)));
  int64_t group_written = 0;
  for (int64_t t = 0; t < b.num_tokens; ++t) {
    const bool group = is_selecting(TokenRole(b.roles[size_t(t)])) &&
                       has_group_lists(b.num_lists[size_t(t)], h);
    for (int64_t i = t * s.num_heads * b.max_len; i < (t + 1) * s.num_heads * b.max_len; ++i) {
      if (group) {
        ASSERT_EQ(got[size_t(i)], -123.0f) << "token " << t << " element " << i;
        ASSERT_EQ(got16[size_t(i)], plain16[size_t(i)]) << "token " << t << " element " << i;
        group_written += plain.logits[size_t(i)] != -123.0f;
      } else {
        ASSERT_EQ(got[size_t(i)], plain.logits[size_t(i)]) << "token " << t << " element " << i;
        ASSERT_EQ(got16[size_t(i)], -123.0f) << "token " << t << " element " << i;
      }
    }
  }
  // Both group-list tokens wrote (n positions of every head); with H = KVH only the shared one.
  EXPECT_EQ(group_written, (kvh < h ? 29 + 9 : 9) * s.num_heads);
}

// A list holding every position 0..n-1 is the dense row, for each granularity L.
TEST_P(DecodeAttentionProperty, ListOfEveryPositionEqualsDenseRow) {
  const AttentionShape& s = GetParam().shape;
  const int32_t lengths[] = {1, 7, 16, 17, 45};
  for (int64_t lists : {s.num_heads, s.num_kv_heads, int64_t(1)}) {
    std::vector<TokenPlan> sparse, dense;
    for (int32_t n : lengths) {
      sparse.push_back({TokenRole::kSparse, n, int32_t(lists), n});  // K = n: every position
      dense.push_back({TokenRole::kDense, n});
    }
    AttentionBatch a(s, sparse, 21);
    AttentionBatch d(s, dense, 21);  // same seed: same cache, block tables and q
    const Result ra = run(a, 0, a.num_tokens), rd = run(d, 0, d.num_tokens);
    EXPECT_TRUE(testing::all_close(ra.out, rd.out, 1e-6f, 1e-6f)) << "L = " << lists;
    EXPECT_TRUE(testing::all_close(ra.lse, rd.lse, 1e-6f, 1e-6f)) << "L = " << lists;
  }
}

TEST_P(DecodeAttentionProperty, SinglePositionListsReturnTheirValueExactly) {
  const AttentionShape& s = GetParam().shape;
  const int32_t lists = int32_t(s.num_kv_heads);
  AttentionBatch b(s, {{TokenRole::kSparse, 13, lists, 1}, {TokenRole::kSparse, 40, lists, 1}}, 31);
  // Each list holds one position (n - 1 by construction); make them differ per list.
  for (int64_t t = 0; t < b.num_tokens; ++t) {
    for (int64_t l = 0; l < lists; ++l) {
      b.indices[size_t((t * b.max_lists + l) * b.max_budget)] =
          int32_t((5 * l + t) % b.lengths[size_t(t)]);
    }
  }
  const Result r = run(b, 0, b.num_tokens);
  const PagedKv kv{b.k_cache.view(), b.v_cache.view(),
                   make_view(b.block_tables.data(), DType::kI32, {b.num_rows, b.max_pages})};
  for (int64_t t = 0; t < b.num_tokens; ++t) {
    for (int64_t h = 0; h < s.num_heads; ++h) {
      const int64_t l = h / (s.num_heads / lists), kvh = h / (s.num_heads / s.num_kv_heads);
      const PagedSlot slot =
          kv.slot(b.seq_ids[size_t(t)], b.indices[size_t((t * b.max_lists + l) * b.max_budget)]);
      for (int64_t d = 0; d < s.head_dim; ++d) {
        ASSERT_EQ(r.out[size_t((t * s.num_heads + h) * s.head_dim + d)],
                  get_f32(b.v_cache.view(), slot.page, slot.offset, kvh, d))
            << "token " << t << " head " << h << " dim " << d;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, DecodeAttentionProperty,
    ::testing::Values(Case{"mha_page1", {2, 2, 4, 1}}, Case{"gqa4x2_page4", {8, 2, 16, 4}},
                      Case{"gqa8x4_d8_page16", {8, 4, 8, 16}},
                      Case{"gqa4x1_page16", {4, 1, 16, 16}}, Case{"odd_sizes", {6, 3, 7, 5}}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace tidal::kernels
