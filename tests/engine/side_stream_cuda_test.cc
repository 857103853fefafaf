// SPDX-License-Identifier: Apache-2.0
// Work beside a layer on its own stream (LlamaWorkspace::side_stream: a selection layer's group
// sums, top-k and list commit beside its MLP; Quest's page-bound update where no token of the
// layer runs Quest) gives the same steps as on the main stream (TIDAL_SIDE_STREAM=0): a batch of
// every policy (tidal at each granularity, selecting in the last layer too, beside full and
// quest) decodes to the same logits, bit for bit, the same tokens and the same
// position-persistence counts, through replayed graphs and eagerly; and the bounds a tidal
// sequence's steps wrote beside their layers serve a Quest fork of it as the main stream's do.
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "runtime/engine/engine.h"
#include "tests/testing/engine_cuda.h"
#include "tests/testing/model_config.h"

namespace tidal::engine {
namespace {

using model::AttentionPolicy;
using model::Granularity;
using testing::tidal_policy;

// GQA (4 query heads a KV head) at head_dim 64: the tensor-core decode attention in bf16, and
// per-KV-head and shared lists that go through the group sums.
model::ModelConfig config() {
  testing::TinyLlama t;
  t.layers = 6;
  t.heads = 8;
  t.kv_heads = 2;
  t.head_dim = 64;
  t.context = 256;
  t.vocab = 128;
  t.inter = 256;
  return testing::untied_llama(t);
}

// An engine created with TIDAL_SIDE_STREAM set to `mode` (unset when null); the workspace reads
// it when it is created.
std::unique_ptr<Engine> engine_with(const char* mode, const model::LlamaWeights& host,
                                    const EngineConfig& cfg) {
  const char* before = std::getenv("TIDAL_SIDE_STREAM");
  const std::string saved = before != nullptr ? before : "";
  if (mode != nullptr) {
    setenv("TIDAL_SIDE_STREAM", mode, 1);
  } else {
    unsetenv("TIDAL_SIDE_STREAM");
  }
  auto e = testing::make_engine(config(), host, cfg);
  if (before != nullptr) {
    setenv("TIDAL_SIDE_STREAM", saved.c_str(), 1);
  } else {
    unsetenv("TIDAL_SIDE_STREAM");
  }
  return e;
}

struct Case {
  DType dtype;
  bool graphs;
};

class SideStreamCuda : public ::testing::TestWithParam<Case> {};

TEST_P(SideStreamCuda, SameStepsAsOnTheMainStream) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const Case param = GetParam();
  const model::ModelConfig c = config();
  const model::LlamaWeights host = testing::host_weights(c, 53);
  EngineConfig cfg = testing::gpu_config(param.dtype, param.graphs);
  cfg.page_size = 8;
  auto side = engine_with(nullptr, host, cfg);
  auto low = engine_with("low", host, cfg);
  auto main = engine_with("0", host, cfg);
  ASSERT_TRUE(side && low && main);
  EXPECT_TRUE(side->workspace().side_stream != nullptr);
  EXPECT_TRUE(low->workspace().side_stream != nullptr);
  EXPECT_TRUE(main->workspace().side_stream == nullptr);

  // Budgets well below the contexts (33..90 tokens): the lists are sparse, and the selection
  // layers' lists change from step to step.
  const std::vector<AttentionPolicy> policies = {
      AttentionPolicy(),
      tidal_policy(16, Granularity::kPerQueryHead, {4}),
      tidal_policy(16, Granularity::kPerKvHead, {}),
      tidal_policy(24, Granularity::kShared, {3}),
      tidal_policy(16, Granularity::kPerKvHead, {5}),  // selects in the last layer too
      testing::quest_policy(32, 8)};
  std::vector<std::vector<int32_t>> prompts;
  for (size_t i = 0; i < policies.size(); ++i) {
    prompts.push_back(testing::random_prompt(33 + 9 * i, c.vocab, uint32_t(70 + i)));
  }
  const int64_t steps = 24;
  const auto want = testing::run_lockstep(*main, prompts, policies, steps);
  ASSERT_EQ(want.size(), policies.size());
  for (Engine* e : {side.get(), low.get()}) {
    const auto got = testing::run_lockstep(*e, prompts, policies, steps);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      const std::string name = testing::policy_name(policies[i]);
      EXPECT_EQ(got[i].tokens, want[i].tokens) << name;
      ASSERT_EQ(got[i].logits.size(), want[i].logits.size()) << name;
      for (size_t s = 0; s < want[i].logits.size(); ++s) {
        ASSERT_EQ(got[i].logits[s], want[i].logits[s]) << name << " step " << s;
      }
      EXPECT_EQ(got[i].stats.overlap_kept, want[i].stats.overlap_kept) << name;
      EXPECT_EQ(got[i].stats.overlap_total, want[i].stats.overlap_total) << name;
    }
  }
  // The selections ran: the sequences with re-selection layers counted their lists' overlap.
  EXPECT_GT(want[1].stats.overlap_total, 0);
  EXPECT_GT(want[4].stats.overlap_total, 0);
  if (param.graphs) {
    EXPECT_GE(side->graphs_captured(), 1);
    EXPECT_EQ(side->graphs_captured(), main->graphs_captured()) << "the same graphs, replayed";
  }
}

// A tidal sequence decodes alone (every layer's page bounds updated beside the layer), then a
// Quest fork of it reads those bounds in its own steps: the same logits as an engine that
// updated them on the main stream.
TEST_P(SideStreamCuda, BoundsWrittenBesideTheLayerServeAQuestFork) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const Case param = GetParam();
  const model::ModelConfig c = config();
  const model::LlamaWeights host = testing::host_weights(c, 59);
  EngineConfig cfg = testing::gpu_config(param.dtype, param.graphs);
  cfg.page_size = 8;
  ASSERT_TRUE(cfg.quest_bounds);
  std::vector<std::vector<std::vector<float>>> runs;
  for (const char* mode : {"0", "1"}) {
    auto e = engine_with(mode, host, cfg);
    ASSERT_NE(e, nullptr);
    SequenceOptions tidal;
    tidal.attention = tidal_policy(16, Granularity::kPerKvHead, {4});
    tidal.sampling.temperature = 0;
    SeqId source, forked;
    ASSERT_TRUE(e->add_sequence(testing::random_prompt(30, c.vocab, 91), tidal, &source).ok());
    int32_t token = -1;
    ASSERT_TRUE(e->prefill(source, TensorView(), &token).ok());
    std::vector<int32_t> s;
    for (int step = 0; step < 40; ++step) {  // 40 positions: five pages of bounds from decode
      ASSERT_TRUE(e->decode({source}, {token}, TensorView(), &s).ok());
      token = s[0];
    }
    SequenceOptions quest = tidal;
    quest.attention = testing::quest_policy(24, 8);
    ASSERT_TRUE(e->fork(source, quest, &forked).ok());
    std::vector<std::vector<float>> logits;
    for (int step = 0; step < 8; ++step) {
      logits.emplace_back(static_cast<size_t>(c.vocab));
      ASSERT_TRUE(e->decode({forked}, {token},
                            make_view(logits.back().data(), DType::kF32, {1, c.vocab}), &s)
                      .ok());
      token = s[0];
    }
    runs.push_back(std::move(logits));
  }
  ASSERT_EQ(runs[0].size(), runs[1].size());
  for (size_t step = 0; step < runs[0].size(); ++step) {
    EXPECT_EQ(runs[1][step], runs[0][step]) << "step " << step;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SideStreamCuda,
    ::testing::Values(Case{DType::kF32, true}, Case{DType::kBF16, true},
                      Case{DType::kBF16, false}),
    [](const auto& info) {
      return std::string(dtype_name(info.param.dtype)) + (info.param.graphs ? "_graphs" : "_eager");
    });

}  // namespace
}  // namespace tidal::engine
