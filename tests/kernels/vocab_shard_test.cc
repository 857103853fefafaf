// SPDX-License-Identifier: Apache-2.0
// The vocabulary-parallel ops by hand: a shard's lookup writes its rows and zeros elsewhere (so
// the sum over shards is the whole table's lookup), and the shard argmax + merge equals the
// argmax over the whole row, ties going to the lower id as sample_tokens' greedy rule does.
#include "kernels/vocab_shard.h"

#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

TEST(VocabShardRef, LookupWritesTheShardsRowsAndZerosForOtherIds) {
  // Table rows 0..5 of hidden 2: row i = (i, 10 i). Shards of 3: ids 0-2 and 3-5.
  std::vector<float> table;
  for (int i = 0; i < 6; ++i) table.insert(table.end(), {float(i), float(10 * i)});
  std::vector<int32_t> ids = {4, 1, 5, 0};
  std::vector<float> sum(8, 0.0f);
  for (int shard = 0; shard < 2; ++shard) {
    std::vector<float> out(8, -1.0f);
    embedding_lookup_shard(make_view(out.data(), DType::kF32, {4, 2}),
                           make_view(table.data() + shard * 6, DType::kF32, {3, 2}),
                           make_view(ids.data(), DType::kI32, {4}), shard * 3, Stream{});
    if (shard == 0) {
      EXPECT_EQ(out, (std::vector<float>{0, 0, 1, 10, 0, 0, 0, 0}));
    }
    for (size_t i = 0; i < 8; ++i) sum[i] += out[i];
  }
  EXPECT_EQ(sum, (std::vector<float>{4, 40, 1, 10, 5, 50, 0, 0}));
}

float as_float(int32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

TEST(VocabShardRef, ShardArgmaxMergedIsTheWholeRowsArgmaxWithTiesToTheLowerId) {
  // Two rows over vocab 6 in shards of 3. Row 0: max 5.0 at ids 1 and 4 (tie: 1). Row 1: the
  // max 7.0 only in the second shard, at id 5; -inf and repeats elsewhere.
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> logits = {0.5f, 5.0f, -2.0f, 1.0f, 5.0f, 5.0f,  //
                               -inf, -inf, -inf,  3.0f, 3.0f, 7.0f};
  std::vector<int32_t> pairs(2 * 2 * 2);
  for (int shard = 0; shard < 2; ++shard) {
    TensorView view = make_view(logits.data() + 3 * shard, DType::kF32, {2, 3});
    view.stride[0] = 6;  // rows of the whole logits
    argmax_shard(make_view(pairs.data() + 4 * shard, DType::kI32, {2, 2}), view, 3 * shard,
                 Stream{});
  }
  EXPECT_EQ(pairs[1], 1);  // shard 0, row 0: id 1
  EXPECT_EQ(as_float(pairs[0]), 5.0f);
  EXPECT_EQ(pairs[3], 0);  // shard 0, row 1: all -inf, the first id
  EXPECT_EQ(pairs[5], 4);  // shard 1, row 0: 5.0 at ids 4 and 5: the first
  EXPECT_EQ(pairs[7], 5);
  std::vector<int32_t> tokens(2, -1);
  argmax_merge(make_view(tokens.data(), DType::kI32, {2}),
               make_view(pairs.data(), DType::kI32, {2, 2, 2}), Stream{});
  EXPECT_EQ(tokens, (std::vector<int32_t>{1, 5}));
}

TEST(VocabShardRef, MergeOfOneShardIsItsArgmax) {
  std::vector<float> logits = {3.0f, 9.0f, 9.0f};
  std::vector<int32_t> pairs(2), token(1);
  argmax_shard(make_view(pairs.data(), DType::kI32, {1, 2}),
               make_view(logits.data(), DType::kF32, {1, 3}), 0, Stream{});
  argmax_merge(make_view(token.data(), DType::kI32, {1}),
               make_view(pairs.data(), DType::kI32, {1, 1, 2}), Stream{});
  EXPECT_EQ(token[0], 1);
}

}  // namespace
}  // namespace tidal::kernels
