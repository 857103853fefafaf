// SPDX-License-Identifier: Apache-2.0
// The step plan's prior_lens: what decode attention may read before its programmatic wait.
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

}  // namespace
}  // namespace tidal::engine
