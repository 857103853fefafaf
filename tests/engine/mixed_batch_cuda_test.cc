// SPDX-License-Identifier: Apache-2.0
// One decode step serves a batch that mixes policies (DESIGN.md §7): eight sequences of
// different prompt lengths under full, tidal (per-query-head, per-KV-head, shared, with and
// without re-selection) and Quest decode together, each exactly as when it runs alone; and CUDA
// graph replay gives bitwise the logits of eager launches for the same steps.
#include <cstdio>
#include <cstring>
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
using testing::quest_policy;
using testing::tidal_policy;

// 6 layers, 4 query heads over 2 KV heads of 64, context 256.
model::ModelConfig config() {
  testing::TinyLlama t;
  t.layers = 6;
  t.head_dim = 64;
  t.context = 256;
  t.vocab = 64;
  t.inter = 128;
  return testing::untied_llama(t);
}

constexpr int64_t kPage = 8;
constexpr int64_t kSteps = 24;

// Eight sequences (a full graph bucket, so eager and graph runs launch the same shapes). Budgets
// below the contexts (5..88 tokens), except where a short prompt starts under K and outgrows it.
const std::vector<AttentionPolicy>& policies() {
  static const std::vector<AttentionPolicy> p = {
      AttentionPolicy(),
      tidal_policy(8, Granularity::kPerQueryHead, {4}),
      tidal_policy(8, Granularity::kPerKvHead, {}),
      tidal_policy(12, Granularity::kShared, {4}),
      quest_policy(16, kPage),
      tidal_policy(16, Granularity::kPerQueryHead, {}),
      quest_policy(24, kPage),
      tidal_policy(12, Granularity::kPerKvHead, {3, 5}),
  };
  return p;
}

std::vector<std::vector<int32_t>> prompts() {
  const std::vector<size_t> lengths = {5, 12, 20, 33, 47, 16, 64, 9};
  std::vector<std::vector<int32_t>> out;
  for (size_t i = 0; i < lengths.size(); ++i) {
    out.push_back(testing::random_prompt(lengths[i], config().vocab, uint32_t(100 + i)));
  }
  return out;
}

EngineConfig engine_config(DType dtype, bool graphs) {
  EngineConfig cfg = testing::gpu_config(dtype, graphs);
  cfg.page_size = kPage;
  cfg.max_batch = 8;
  return cfg;
}

class MixedBatchCuda : public ::testing::TestWithParam<DType> {};

TEST_P(MixedBatchCuda, EachSequenceDecodesAsAloneAndGraphReplayEqualsEager) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const DType dtype = GetParam();
  const model::ModelConfig c = config();
  const model::LlamaWeights host = testing::host_weights(c, 41);
  auto solo_engine = testing::make_engine(c, host, engine_config(dtype, true));
  auto graphs_on = testing::make_engine(c, host, engine_config(dtype, true));
  auto graphs_off = testing::make_engine(c, host, engine_config(dtype, false));
  ASSERT_TRUE(solo_engine && graphs_on && graphs_off);
  const auto ps = prompts();
  const auto& pol = policies();

  std::vector<testing::SequenceRun> solo;
  for (size_t i = 0; i < ps.size(); ++i) {
    auto r = testing::run_lockstep(*solo_engine, {ps[i]}, {pol[i]}, kSteps);
    ASSERT_EQ(r.size(), 1u);
    solo.push_back(std::move(r[0]));
  }
  const auto on = testing::run_lockstep(*graphs_on, ps, pol, kSteps);
  const auto off = testing::run_lockstep(*graphs_off, ps, pol, kSteps);
  ASSERT_EQ(on.size(), ps.size());
  ASSERT_EQ(off.size(), ps.size());

  for (size_t i = 0; i < ps.size(); ++i) {
    const std::string name = "sequence " + std::to_string(i) + " (" +
                             testing::policy_name(pol[i]) + ", prompt " +
                             std::to_string(ps[i].size()) + ")";
    // Batched as alone. Where they part, say how decisive the solo pick was (a near-tie there
    // means the batch changed rounding, not what was computed).
    const size_t agree = testing::agreeing_prefix(on[i].tokens, solo[i].tokens);
    EXPECT_EQ(on[i].tokens, solo[i].tokens)
        << name << ": first difference at token " << agree << ", where the solo run's top-2 "
        << "logit margin was "
        << (agree < solo[i].logits.size() ? testing::top2_margin(solo[i].logits[agree]) : 0.0f);
    // Until the tokens part (if ever), the logits agree within the dtype's tolerance.
    const testing::Tolerance tol = testing::tolerance(dtype);
    for (size_t step = 0; step <= agree && step < solo[i].logits.size(); ++step) {
      EXPECT_TRUE(testing::all_close(on[i].logits[step], solo[i].logits[step], tol.atol, tol.rtol))
          << name << " step " << step;
    }
    // Graph replay equals eager launches, bit for bit, at every step.
    ASSERT_EQ(on[i].logits.size(), off[i].logits.size());
    EXPECT_EQ(on[i].tokens, off[i].tokens) << name;
    for (size_t step = 0; step < on[i].logits.size(); ++step) {
      const auto& a = on[i].logits[step];
      const auto& b = off[i].logits[step];
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
          << name << " step " << step << ": graph replay and eager logits differ ("
          << testing::all_close(a, b, 0, 0).message() << ")";
    }
    // Sequences whose policy attends less than everything really read fewer rows.
    const model::AttentionStats& st = on[i].stats;
    EXPECT_EQ(st.decode_steps, kSteps) << name;
    if (pol[i].kind == model::AttentionKind::kTidal) {
      EXPECT_GT(st.layer_steps[int(model::LayerRole::kSparse)], 0) << name;
    }
  }
  // The mix is a real mix: some sparse sequences decode otherwise than under full attention.
  int differ = 0;
  for (size_t i = 1; i < ps.size(); ++i) {
    const auto full = testing::run_lockstep(*solo_engine, {ps[i]}, {AttentionPolicy()}, kSteps);
    ASSERT_EQ(full.size(), 1u);
    differ += full[0].tokens != solo[i].tokens;
  }
  std::printf("%s: %d of 7 sparse sequences decode otherwise under full attention\n",
              dtype_name(dtype), differ);
  EXPECT_GT(differ, 0);
  EXPECT_GT(graphs_on->graphs_captured(), 0);
  EXPECT_GT(solo_engine->graphs_captured(), 0);
  EXPECT_EQ(graphs_off->graphs_captured(), 0);
  EXPECT_EQ(graphs_on->kv_tokens_in_use(), 0);  // every page returned
}

INSTANTIATE_TEST_SUITE_P(Dtypes, MixedBatchCuda, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace tidal::engine
