// SPDX-License-Identifier: Apache-2.0
// The step plan's prior_lens (what decode attention may read before its programmatic wait) and
// its layer ops (which launches a layer holds, and the shape hints of its attention).
#include "runtime/engine/step_plan.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace tidal::engine {
namespace {

TEST(StepPlan, PriorLensStopAtEachTokensOwnRowAndAtACorrectionChunkBesideIt) {
  const StepCapacity cap{64, 4, 4, 8, 2, 8};
  StepPlan plan(cap);
  std::vector<uint8_t> host(plan.bytes());
  plan.bind(host.data());
  DecodeToken a;
  a.position = 100;
  a.seq_row = 3;
  DecodeToken b;
  b.position = 50;
  b.seq_row = 1;
  plan.add_decode(a);
  plan.add_decode(b);
  // A correction chunk of row 3 (positions 90..97) beside its decode token, and a prefill chunk
  // of another row: only token a's bound moves.
  const std::vector<int32_t> tokens(8, 7);
  plan.add_prefill(3, 90, tokens.data(), 8);
  plan.add_prefill(2, 0, tokens.data(), 5);
  const model::ForwardBatch batch = plan.batch(host.data(), Device{}, TensorView());
  ASSERT_EQ(batch.prior_lens.numel(), 2);
  EXPECT_EQ(batch.prior_lens.data_as<int32_t>()[0], 90);
  EXPECT_EQ(batch.prior_lens.data_as<int32_t>()[1], 50);
  EXPECT_EQ(batch.lengths.data_as<int32_t>()[0], 101);

  // clear() starts a new step: the bound is the token's position again.
  plan.clear();
  plan.add_decode(a);
  const model::ForwardBatch next = plan.batch(host.data(), Device{}, TensorView());
  EXPECT_EQ(next.prior_lens.data_as<int32_t>()[0], 100);
}

// A layer is lists-only once no decode token is left on a dense range there, whatever the order
// of set_role calls; head lists mark the layers where such a token reads lists; clear() resets.
TEST(StepPlan, LayerOpsFollowTheRolesOfEveryDecodeToken) {
  using kernels::TokenRole;
  const StepCapacity cap{64, 4, 4, 8, 3, 8};
  StepPlan plan(cap);
  std::vector<uint8_t> host(plan.bytes());
  plan.bind(host.data());
  const uint8_t* ops = plan.layer_ops();
  DecodeToken per_kv;
  per_kv.position = 10;
  per_kv.num_lists = 8;
  DecodeToken per_q = per_kv;
  per_q.num_lists = 32;
  per_q.head_lists = true;
  const int64_t a = plan.add_decode(per_kv);
  for (int64_t l = 0; l < 3; ++l) EXPECT_EQ(ops[l], 0) << l;  // dense everywhere so far
  plan.set_role(a, 0, TokenRole::kDense);
  plan.set_role(a, 1, TokenRole::kSelect);
  plan.set_role(a, 2, TokenRole::kSparse);
  EXPECT_EQ(ops[0], 0);
  EXPECT_EQ(ops[1], model::kLayerSelects);
  EXPECT_EQ(ops[2], model::kLayerListsOnly);

  // A second token, dense at first in every layer: no layer is lists-only until its roles say so.
  const int64_t b = plan.add_decode(per_q);
  EXPECT_EQ(ops[2], 0);
  plan.set_role(b, 2, TokenRole::kQuest);
  EXPECT_EQ(ops[2], model::kLayerListsOnly | model::kLayerQuest | model::kLayerHeadLists);
  plan.set_role(b, 1, TokenRole::kSparse);  // beside a selecting token: not lists-only
  EXPECT_EQ(ops[1], model::kLayerSelects | model::kLayerHeadLists);
  plan.set_role(a, 0, TokenRole::kSparse);
  EXPECT_EQ(ops[0], 0);  // token b is still dense there
  plan.set_role(b, 0, TokenRole::kSparse);
  EXPECT_EQ(ops[0], model::kLayerListsOnly | model::kLayerHeadLists);
  plan.set_role(a, 0, TokenRole::kDense);  // a role set twice: the count follows the last one
  EXPECT_EQ(ops[0], model::kLayerHeadLists);

  plan.clear();
  for (int64_t l = 0; l < 3; ++l) EXPECT_EQ(ops[l], 0) << l;
  const int64_t c = plan.add_decode(per_kv);
  for (int64_t l = 0; l < 3; ++l) plan.set_role(c, l, TokenRole::kSparse);
  for (int64_t l = 0; l < 3; ++l) EXPECT_EQ(ops[l], model::kLayerListsOnly) << l;
  // Padding up to a graph bucket (dense over one position) leaves the hints as they are.
  DecodeToken pad;
  pad.padding = true;
  plan.add_decode(pad);
  for (int64_t l = 0; l < 3; ++l) EXPECT_EQ(ops[l], model::kLayerListsOnly) << l;
}

}  // namespace
}  // namespace tidal::engine
