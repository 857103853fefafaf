// SPDX-License-Identifier: Apache-2.0
// Engine::step on the GPU: a mixed step (decode tokens beside a prefill chunk and a correction
// chunk) gives the logits and K/V of separate calls to rounding (the mixed step runs its
// projections as one GEMM, separate decode steps as GEMVs), and decode-only steps through step()
// stay on the CUDA-graph path, bit for bit equal to decode(); graphs are kept per set of layer
// launches; replaying the last step's graph advances nothing.
#include <memory>
#include <vector>

#include "runtime/engine/engine.h"
#include "tests/testing/engine_cuda.h"
#include "tests/testing/model_config.h"

namespace tidal::engine {
namespace {

model::ModelConfig config() {
  testing::TinyLlama t;
  t.layers = 4;
  t.head_dim = 64;
  t.context = 256;
  t.vocab = 64;
  t.inter = 128;
  return testing::untied_llama(t);
}

std::vector<float> row(const std::vector<float>& all, int64_t r, int64_t vocab) {
  return std::vector<float>(all.begin() + r * vocab, all.begin() + (r + 1) * vocab);
}

class MixedStepCuda : public ::testing::TestWithParam<DType> {};

TEST_P(MixedStepCuda, MatchesSeparatePrefillAndDecode) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const DType dtype = GetParam();
  const float tol = dtype == DType::kF32 ? 2e-3f : 6e-2f;
  const model::LlamaWeights host = testing::host_weights(config(), 41);
  EngineConfig cfg = testing::gpu_config(dtype);
  cfg.page_size = 8;
  cfg.prefill_chunk = 32;
  auto e = testing::make_engine(config(), host, cfg);
  ASSERT_NE(e, nullptr);
  const int64_t vocab = config().vocab;
  SequenceOptions tidal;
  tidal.attention = testing::tidal_policy(8, model::Granularity::kPerKvHead, {3});
  tidal.sampling.temperature = 0;
  SequenceOptions full;
  full.sampling.temperature = 0;
  std::vector<SeqId> sep(3), mix(3);
  for (int set = 0; set < 2; ++set) {
    std::vector<SeqId>& ids = set == 0 ? sep : mix;
    ASSERT_TRUE(e->add_sequence(testing::random_prompt(40, vocab, 1), tidal, &ids[0]).ok());
    ASSERT_TRUE(e->add_sequence(testing::random_prompt(30, vocab, 2), full, &ids[1]).ok());
    ASSERT_TRUE(e->add_sequence(testing::random_prompt(27, vocab, 3), full, &ids[2]).ok());
    for (int i = 0; i < 2; ++i) ASSERT_TRUE(e->prefill(ids[i], TensorView()).ok());
    std::vector<int32_t> s;  // sparse decode steps, so the correction below has work
    for (int step = 0; step < 4; ++step) {
      ASSERT_TRUE(e->decode({ids[0]}, {7}, TensorView(), &s).ok());
    }
  }
  std::vector<float> want(static_cast<size_t>(3 * vocab)), got(static_cast<size_t>(3 * vocab));
  std::vector<int32_t> want_ids, got_ids;
  ASSERT_TRUE(e->correct(sep[0], 4).ok());
  ASSERT_TRUE(e->decode({sep[0], sep[1]}, {5, 9}, make_view(want.data(), DType::kF32, {2, vocab}),
                        &want_ids)
                  .ok());
  int32_t first = -1;
  ASSERT_TRUE(
      e->prefill(sep[2], make_view(want.data() + 2 * vocab, DType::kF32, {vocab}), &first).ok());
  want_ids.push_back(first);
  const std::vector<StepChunk> chunks = {StepChunk{mix[0], 40, 4, false, true},
                                         StepChunk{mix[2], 0, 27, true, false}};
  const int64_t captures = e->graphs_captured();
  ASSERT_TRUE(e->step({mix[0], mix[1]}, {5, 9}, chunks,
                      make_view(got.data(), DType::kF32, {3, vocab}), &got_ids)
                  .ok());
  EXPECT_EQ(e->graphs_captured(), captures);  // a mixed step runs eagerly
  for (int64_t r = 0; r < 3; ++r) {
    EXPECT_TRUE(testing::all_close(row(got, r, vocab), row(want, r, vocab), tol, tol)) << r;
  }
  for (int i = 0; i < 3; ++i) {
    for (int64_t pos : {0, 26, 40, 43}) {
      if (pos >= e->length(mix[i])) continue;
      std::vector<float> k0, v0, k1, v1;
      ASSERT_TRUE(e->read_kv(sep[i], 3, pos, &k0, &v0).ok());
      ASSERT_TRUE(e->read_kv(mix[i], 3, pos, &k1, &v1).ok());
      EXPECT_TRUE(testing::all_close(k1, k0, tol, tol)) << i << " " << pos;
      EXPECT_TRUE(testing::all_close(v1, v0, tol, tol)) << i << " " << pos;
    }
  }
  EXPECT_EQ(e->stats(mix[0]).correction_passes, 1);
}

TEST_P(MixedStepCuda, DecodeOnlyStepsReplayGraphsAsDecodeDoes) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const DType dtype = GetParam();
  const model::LlamaWeights host = testing::host_weights(config(), 43);
  EngineConfig cfg = testing::gpu_config(dtype);
  cfg.page_size = 8;
  auto e = testing::make_engine(config(), host, cfg);
  ASSERT_NE(e, nullptr);
  const int64_t vocab = config().vocab;
  SeqId a, b;
  ASSERT_TRUE(e->add_sequence(testing::random_prompt(12, vocab, 4), SequenceOptions(), &a).ok());
  ASSERT_TRUE(e->add_sequence(testing::random_prompt(12, vocab, 4), SequenceOptions(), &b).ok());
  int32_t ta = -1, tb = -1;
  ASSERT_TRUE(e->prefill(a, TensorView(), &ta).ok());
  ASSERT_TRUE(e->prefill(b, TensorView(), &tb).ok());
  std::vector<float> la(static_cast<size_t>(vocab)), lb(static_cast<size_t>(vocab));
  std::vector<int32_t> sa, sb;
  const std::vector<StepChunk> none;
  for (int step = 0; step < 6; ++step) {
    ASSERT_TRUE(e->decode({a}, {ta}, make_view(la.data(), DType::kF32, {1, vocab}), &sa).ok());
    const int64_t captures = e->graphs_captured();
    ASSERT_TRUE(e->step({b}, {tb}, none, make_view(lb.data(), DType::kF32, {1, vocab}), &sb).ok());
    if (step > 0) {
      EXPECT_EQ(e->graphs_captured(), captures) << "replayed, not captured again";
    }
    EXPECT_EQ(la, lb) << step;
    EXPECT_EQ(sa, sb) << step;
    ta = sa[0];
    tb = sb[0];
  }
  EXPECT_GE(e->graphs_captured(), 1);
}

// Graphs are kept per set of layer launches: a full sequence's steps after a tidal sequence's
// replay the full graph they captured first (no selection launches in them), and alternating
// the two captures nothing new; the logits equal an engine without graphs.
TEST_P(MixedStepCuda, GraphsAreKeptPerSetOfLayerLaunches) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const DType dtype = GetParam();
  const model::LlamaWeights host = testing::host_weights(config(), 47);
  EngineConfig cfg = testing::gpu_config(dtype);
  cfg.page_size = 8;
  EngineConfig eager_cfg = cfg;
  eager_cfg.cuda_graphs = false;
  auto e = testing::make_engine(config(), host, cfg);
  auto eager = testing::make_engine(config(), host, eager_cfg);
  ASSERT_NE(e, nullptr);
  ASSERT_NE(eager, nullptr);
  const int64_t vocab = config().vocab;
  SequenceOptions full;
  full.sampling.temperature = 0;
  SequenceOptions tidal = full;
  tidal.attention = testing::tidal_policy(8, model::Granularity::kPerQueryHead, {3});
  SeqId f, t, ef;
  ASSERT_TRUE(e->add_sequence(testing::random_prompt(40, vocab, 5), full, &f).ok());
  ASSERT_TRUE(e->add_sequence(testing::random_prompt(40, vocab, 6), tidal, &t).ok());
  ASSERT_TRUE(eager->add_sequence(testing::random_prompt(40, vocab, 5), full, &ef).ok());
  int32_t tf = -1, tt = -1, tef = -1;
  ASSERT_TRUE(e->prefill(f, TensorView(), &tf).ok());
  ASSERT_TRUE(e->prefill(t, TensorView(), &tt).ok());
  ASSERT_TRUE(eager->prefill(ef, TensorView(), &tef).ok());
  ASSERT_EQ(tf, tef);
  std::vector<float> lf(static_cast<size_t>(vocab)), lef(static_cast<size_t>(vocab));
  std::vector<int32_t> s;
  for (int step = 0; step < 6; ++step) {
    ASSERT_TRUE(e->decode({f}, {tf}, make_view(lf.data(), DType::kF32, {1, vocab}), &s).ok());
    tf = s[0];
    ASSERT_TRUE(
        eager->decode({ef}, {tef}, make_view(lef.data(), DType::kF32, {1, vocab}), &s).ok());
    tef = s[0];
    EXPECT_EQ(lf, lef) << step;
    if (step == 0) {
      EXPECT_EQ(e->graphs_captured(), 1);
    }
    ASSERT_TRUE(e->decode({t}, {tt}, TensorView(), &s).ok());
    tt = s[0];
    if (step == 0) {
      EXPECT_EQ(e->graphs_captured(), 2);
    }
  }
  EXPECT_EQ(e->graphs_captured(), 2) << "each set replays its own graph";
  EXPECT_EQ(eager->graphs_captured(), 0);
}

// Engine::replay_last_step reruns the last decode step's graph and advances nothing: every step
// after the replays gives the logits and tokens of an engine that never replayed. A prefill ran
// no graph, and a sequence added since makes the step stale: nothing to replay.
TEST_P(MixedStepCuda, ReplayingTheLastStepAdvancesNothing) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const DType dtype = GetParam();
  const model::LlamaWeights host = testing::host_weights(config(), 61);
  EngineConfig cfg = testing::gpu_config(dtype);
  cfg.page_size = 8;
  auto a = testing::make_engine(config(), host, cfg);
  auto b = testing::make_engine(config(), host, cfg);
  ASSERT_TRUE(a && b);
  const int64_t vocab = config().vocab;
  SequenceOptions tidal;
  tidal.attention = testing::tidal_policy(8, model::Granularity::kPerKvHead, {3});
  tidal.sampling.temperature = 0;
  SeqId sa, sb;
  ASSERT_TRUE(a->add_sequence(testing::random_prompt(40, vocab, 8), tidal, &sa).ok());
  ASSERT_TRUE(b->add_sequence(testing::random_prompt(40, vocab, 8), tidal, &sb).ok());
  int32_t ta = -1, tb = -1;
  ASSERT_TRUE(a->prefill(sa, TensorView(), &ta).ok());
  ASSERT_TRUE(b->prefill(sb, TensorView(), &tb).ok());
  EXPECT_EQ(a->replay_last_step(1).code(), StatusCode::kInvalidArgument);
  std::vector<float> la(static_cast<size_t>(vocab)), lb(static_cast<size_t>(vocab));
  std::vector<int32_t> s;
  for (int step = 0; step < 6; ++step) {
    ASSERT_TRUE(a->decode({sa}, {ta}, make_view(la.data(), DType::kF32, {1, vocab}), &s).ok());
    ta = s[0];
    ASSERT_TRUE(a->replay_last_step(3).ok()) << step;
    ASSERT_TRUE(b->decode({sb}, {tb}, make_view(lb.data(), DType::kF32, {1, vocab}), &s).ok());
    tb = s[0];
    EXPECT_EQ(la, lb) << step;
    EXPECT_EQ(ta, tb) << step;
  }
  EXPECT_EQ(a->length(sa), b->length(sb));
  // Once the sequences change, the last step's plan no longer describes them.
  SeqId other;
  ASSERT_TRUE(a->add_sequence(testing::random_prompt(8, vocab, 9), tidal, &other).ok());
  EXPECT_EQ(a->replay_last_step(1).code(), StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(DTypes, MixedStepCuda, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace tidal::engine
