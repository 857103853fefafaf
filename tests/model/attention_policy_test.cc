// SPDX-License-Identifier: Apache-2.0
// Attention policies: validation messages, default re-selection layers, and layer roles.
#include "model/attention_policy.h"

#include <gtest/gtest.h>

#include "tests/testing/model_config.h"

namespace tidal::model {
namespace {

ModelConfig layers(int64_t n) {
  testing::TinyLlama t;
  t.layers = n;
  return testing::tiny_llama(t);
}

AttentionPolicy tidal(int64_t budget) {
  AttentionPolicy p;
  p.kind = AttentionKind::kTidal;
  p.tidal.budget = budget;
  return p;
}

std::string error(const AttentionPolicy& p, int64_t num_layers = 32, int64_t page = 16) {
  const Status s = p.validate(layers(num_layers), page);
  EXPECT_FALSE(s.ok());
  return s.message();
}

TEST(AttentionPolicy, DefaultReselectLayerFollowsTheDepth) {
  EXPECT_EQ(default_reselect_layers(32, 2), (std::vector<int64_t>{13}));
  EXPECT_EQ(default_reselect_layers(64, 2), (std::vector<int64_t>{26}));
  EXPECT_EQ(default_reselect_layers(80, 2), (std::vector<int64_t>{33}));
  EXPECT_EQ(default_reselect_layers(10, 2), (std::vector<int64_t>{4}));
  EXPECT_TRUE(default_reselect_layers(5, 2).empty());  // 13/32 of 5 is layer 2: not above 2
  AttentionPolicy p = tidal(64);
  EXPECT_EQ(reselect_layers(p, layers(32)), (std::vector<int64_t>{13}));
  p.tidal.reselect_layers = std::vector<int64_t>{20, 13, 20};
  EXPECT_EQ(reselect_layers(p, layers(32)), (std::vector<int64_t>{13, 20}));
  p.tidal.reselect_layers = std::vector<int64_t>();  // "none"
  EXPECT_TRUE(reselect_layers(p, layers(32)).empty());
}

TEST(AttentionPolicy, LayerRolesOfEachPolicy) {
  const AttentionPolicy p = tidal(64);
  const std::vector<int64_t> reselect = {13};
  EXPECT_EQ(layer_role(p, reselect, 0), LayerRole::kDense);
  EXPECT_EQ(layer_role(p, reselect, 1), LayerRole::kDense);
  EXPECT_EQ(layer_role(p, reselect, 2), LayerRole::kSelect);
  EXPECT_EQ(layer_role(p, reselect, 3), LayerRole::kSparse);
  EXPECT_EQ(layer_role(p, reselect, 12), LayerRole::kSparse);
  EXPECT_EQ(layer_role(p, reselect, 13), LayerRole::kSelect);
  EXPECT_EQ(layer_role(p, reselect, 31), LayerRole::kSparse);
  AttentionPolicy q;
  q.kind = AttentionKind::kQuest;
  EXPECT_EQ(layer_role(q, {}, 1), LayerRole::kDense);
  EXPECT_EQ(layer_role(q, {}, 2), LayerRole::kQuest);
  EXPECT_EQ(layer_role(AttentionPolicy(), {}, 7), LayerRole::kDense);
  const ModelConfig c = layers(32);
  EXPECT_EQ(num_lists(Granularity::kPerQueryHead, c), 4);
  EXPECT_EQ(num_lists(Granularity::kPerKvHead, c), 2);
  EXPECT_EQ(num_lists(Granularity::kShared, c), 1);
}

TEST(AttentionPolicy, BadPoliciesAreRejectedWithAMessage) {
  EXPECT_NE(error(tidal(1)).find("tidal budget must be >= 2"), std::string::npos);
  AttentionPolicy p = tidal(64);
  p.tidal.reselect_layers = std::vector<int64_t>{32};
  EXPECT_NE(error(p).find("reselect_layers: layer 32 is outside the 32 layers"), std::string::npos);
  p.tidal.reselect_layers = std::vector<int64_t>{1};
  EXPECT_NE(error(p).find("reselect_layers: layer 1 must be above sparse_start 2"),
            std::string::npos);
  p.tidal.reselect_layers = std::vector<int64_t>{2};
  EXPECT_NE(error(p).find("must be above sparse_start"), std::string::npos);
  p = tidal(64);
  p.tidal.sparse_start = 40;
  EXPECT_NE(error(p).find("sparse_start 40 is outside"), std::string::npos);
  AttentionPolicy q;
  q.kind = AttentionKind::kQuest;
  q.quest.budget = 8;
  EXPECT_NE(error(q).find("quest budget 8 is below one page of 16 tokens"), std::string::npos);
  q.quest.budget = 64;
  EXPECT_NE(error(q, 32, 32).find("must equal the KV cache page size 32"), std::string::npos);
  q.quest.page_size = 16;
  q.correction_interval = -1;
  EXPECT_NE(error(q).find("correction_interval"), std::string::npos);
  Granularity g;
  EXPECT_NE(parse_granularity("per-layer", &g).message().find("unknown granularity 'per-layer'"),
            std::string::npos);
  AttentionKind k;
  EXPECT_NE(parse_attention_kind("sparse", &k).message().find("unknown attention"),
            std::string::npos);
  EXPECT_TRUE(tidal(2).validate(layers(32), 16).ok());
}

}  // namespace
}  // namespace tidal::model
