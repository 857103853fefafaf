// SPDX-License-Identifier: Apache-2.0
// Which slice of each weight a TP rank owns: even head / FFN / vocabulary splits, KV heads split
// or replicated, and the splits that cannot be made.
#include "parallel/sharding.h"

#include <gtest/gtest.h>

namespace tidal::parallel {
namespace {

TEST(Sharding, KvHeadsSplitWhenTpDividesThem) {
  HeadShard s;
  ASSERT_TRUE(head_shard(32, 8, 4, 3, &s).ok());  // Llama-3-8B over tp 4
  EXPECT_EQ(s.q_heads.begin, 24);
  EXPECT_EQ(s.q_heads.size, 8);
  EXPECT_EQ(s.kv_heads.begin, 6);
  EXPECT_EQ(s.kv_heads.size, 2);
  EXPECT_EQ(s.kv_replicas, 1);
}

TEST(Sharding, KvHeadsReplicatedWhenTpExceedsThem) {
  // 32 query heads, 8 KV heads (groups of 4) over tp 16: ranks 2k and 2k+1 share KV head k.
  for (int r = 0; r < 16; ++r) {
    HeadShard s;
    ASSERT_TRUE(head_shard(32, 8, 16, r, &s).ok());
    EXPECT_EQ(s.q_heads.begin, 2 * r);
    EXPECT_EQ(s.kv_heads.begin, r / 2) << r;
    EXPECT_EQ(s.kv_heads.size, 1);
    EXPECT_EQ(s.kv_replicas, 2);
    // The rank's query heads all read its KV head.
    EXPECT_EQ(s.q_heads.begin / 4, s.kv_heads.begin);
    EXPECT_EQ((s.q_heads.end() - 1) / 4, s.kv_heads.begin);
  }
}

TEST(Sharding, ImpossibleSplitsAreErrorsNamingTheSizes) {
  HeadShard s;
  Status st = head_shard(8, 4, 3, 0, &s);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("8 query heads"), std::string::npos) << st.message();
  st = head_shard(12, 6, 4, 0, &s);  // 6 KV heads over 4 ranks: neither divides
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("KV heads"), std::string::npos) << st.message();
  Slice inter;
  EXPECT_FALSE(inter_shard(172, 8, 0, &inter).ok());
  ASSERT_TRUE(inter_shard(172, 4, 3, &inter).ok());
  EXPECT_EQ(inter.begin, 129);
  EXPECT_EQ(inter.size, 43);
}

TEST(Sharding, VocabularySplitEvenlyElseReplicated) {
  const Slice a = vocab_shard(128256, 8, 7);
  EXPECT_EQ(a.begin, 7 * 16032);
  EXPECT_EQ(a.size, 16032);
  const Slice b = vocab_shard(32001, 2, 1);  // odd: every rank holds it all
  EXPECT_EQ(b.begin, 0);
  EXPECT_EQ(b.size, 32001);
}

}  // namespace
}  // namespace tidal::parallel
