// SPDX-License-Identifier: Apache-2.0
// TP/PP rank arithmetic: round trips, the TensorRT-LLM layout, and stage layer ranges.
#include "parallel/topology.h"

#include <gtest/gtest.h>

namespace tidal::parallel {
namespace {

TEST(Topology, TpGroupsAreContiguousPpStrided) {
  const ParallelConfig cfg{/*tp_size=*/2, /*pp_size=*/3};
  ASSERT_TRUE(cfg.validate().ok());
  EXPECT_EQ(cfg.world_size(), 6);
  EXPECT_EQ(coords_of(cfg, 0).tp_rank, 0);
  EXPECT_EQ(coords_of(cfg, 1).tp_rank, 1);
  EXPECT_EQ(coords_of(cfg, 1).pp_rank, 0);
  EXPECT_EQ(coords_of(cfg, 4).pp_rank, 2);
  for (int r = 0; r < cfg.world_size(); ++r) EXPECT_EQ(rank_of(cfg, coords_of(cfg, r)), r);
}

TEST(Topology, StageLayersCoverEveryLayerOnce) {
  for (int pp = 1; pp <= 5; ++pp) {
    int64_t next = 0;
    for (int s = 0; s < pp; ++s) {
      const LayerRange r = stage_layers(/*num_layers=*/32, pp, s);
      EXPECT_EQ(r.begin, next);
      EXPECT_GE(r.end - r.begin, 32 / pp);
      next = r.end;
    }
    EXPECT_EQ(next, 32);
  }
  EXPECT_EQ(stage_layers(5, 2, 0).end, 3);  // earlier stages take the extra layer
}

TEST(Topology, RejectsNonPositiveSizes) {
  EXPECT_FALSE((ParallelConfig{0, 1}).validate().ok());
  EXPECT_NE((ParallelConfig{1, -2}).validate().message().find("pp"), std::string::npos);
}

}  // namespace
}  // namespace tidal::parallel
