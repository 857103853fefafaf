// SPDX-License-Identifier: Apache-2.0
// launch_signature: what a distributed decode step decides on the host beyond its layer ops,
// which keys the engine's graphs under TP/PP (a graph replayed for a step with another signature
// would run the wrong launches). Host arrays and group sizes only: no ranks are started.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "kernels/token_role.h"
#include "model/parallel_forward.h"
#include "runtime/check.h"

namespace tidal::model {
namespace {

using kernels::TokenRole;

// A group of two ranks whose collectives must never be called (the signature only reads sizes).
class TwoRanks final : public parallel::Communicator {
 public:
  TwoRanks() : Communicator(0, 2) {}

 private:
  [[noreturn]] static void never() {
    TIDAL_CHECK(false, "launch_signature made a collective");
    std::abort();
  }
  void do_all_reduce(TensorView, Stream) override { never(); }
  void do_all_gather(TensorView, TensorView, bool, Stream) override { never(); }
  void do_broadcast(TensorView, int, Stream) override { never(); }
  void do_send(TensorView, int, Stream) override { never(); }
  void do_recv(TensorView, int, Stream) override { never(); }
  void do_barrier() override { never(); }
  std::unique_ptr<Communicator> do_split(int, int) override { never(); }
};

constexpr int64_t kLayers = 4;

// Two decode tokens over 4 layers: dense, dense, select, sparse (roles[layer][token]).
struct HostStep {
  std::vector<uint8_t> roles = std::vector<uint8_t>(2 * kLayers, uint8_t(TokenRole::kDense));
  std::vector<uint8_t> agreement = {uint8_t(ListAgreement::kApproxTp),
                                    uint8_t(ListAgreement::kNone)};
  std::vector<int32_t> budgets = {8, 16};

  HostStep() {
    for (int t = 0; t < 2; ++t) {
      roles[2 * 2 + t] = uint8_t(TokenRole::kSelect);
      roles[3 * 2 + t] = uint8_t(TokenRole::kSparse);
    }
  }
  ForwardBatch batch() {
    ForwardBatch b;
    b.num_decode = 2;
    b.roles = make_view(roles.data(), DType::kU8, {kLayers, 2});
    b.agreement = make_view(agreement.data(), DType::kU8, {2});
    b.budgets = make_view(budgets.data(), DType::kI32, {2});
    return b;
  }
};

// tp 2, one stage holding every layer.
ForwardParallel tp2(parallel::Communicator* tp) {
  ForwardParallel par;
  par.shard.parallel.tp_size = 2;
  par.shard.layer_end = kLayers;
  par.tp = tp;
  return par;
}

std::vector<int64_t> signature(const ForwardParallel& par, HostStep& step) {
  std::vector<int64_t> sig;
  EXPECT_TRUE(launch_signature(par, step.batch(), &sig));
  return sig;
}

TEST(LaunchSignature, ApproxAgreementKeysItsLayersAndItsCandidatesWidth) {
  TwoRanks tp;
  const ForwardParallel par = tp2(&tp);
  HostStep step;
  // No lists cross a stage boundary (one stage); then per layer the approx TP width: only the
  // selection layer (2) agrees, by token 0's budget.
  EXPECT_EQ(signature(par, step), (std::vector<int64_t>{0, 0, 0, 0, 8, 0}));
  step.budgets[0] = 32;  // a wider candidate set is another launch
  EXPECT_EQ(signature(par, step), (std::vector<int64_t>{0, 0, 0, 0, 32, 0}));
  step.agreement[1] = uint8_t(ListAgreement::kApproxTp);  // the widest agreeing token's budget
  step.budgets[1] = 64;
  EXPECT_EQ(signature(par, step), (std::vector<int64_t>{0, 0, 0, 0, 64, 0}));
}

TEST(LaunchSignature, ExactAgreementIsNotReplayable) {
  TwoRanks tp;
  const ForwardParallel par = tp2(&tp);
  HostStep step;
  step.agreement[1] = uint8_t(ListAgreement::kExactTp);  // an all-reduce as long as its context
  std::vector<int64_t> sig;
  EXPECT_FALSE(launch_signature(par, step.batch(), &sig));
  // Without a group to agree over (one rank), nothing is agreed: replayable.
  ForwardParallel one = par;
  one.tp = nullptr;
  sig.clear();
  EXPECT_TRUE(launch_signature(one, step.batch(), &sig));
  EXPECT_EQ(sig, (std::vector<int64_t>{0, 0}));
}

TEST(LaunchSignature, ListsLiveAcrossAStageBoundary) {
  HostStep step;
  step.agreement = {uint8_t(ListAgreement::kNone), uint8_t(ListAgreement::kNone)};
  ForwardParallel stage0;  // pp 2: layers [0, 3) then [3, 4)
  stage0.shard.parallel.pp_size = 2;
  stage0.shard.layer_end = 3;
  ForwardParallel stage1 = stage0;
  stage1.shard.coords.pp_rank = 1;
  stage1.shard.layer_begin = 3;
  stage1.shard.layer_end = kLayers;
  // Lists picked in layer 2 are used in layer 3: stage 0 sends them, stage 1 receives them.
  EXPECT_EQ(signature(stage0, step), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(signature(stage1, step), (std::vector<int64_t>{1, 0}));
  // Dense everywhere after layer 1: nothing crosses.
  for (int t = 0; t < 2; ++t) step.roles[3 * 2 + t] = uint8_t(TokenRole::kDense);
  for (int t = 0; t < 2; ++t) step.roles[2 * 2 + t] = uint8_t(TokenRole::kDense);
  EXPECT_EQ(signature(stage0, step), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(signature(stage1, step), (std::vector<int64_t>{0, 0}));
}

}  // namespace
}  // namespace tidal::model
