// SPDX-License-Identifier: Apache-2.0
// The attention policies end to end on the GPU, on random-weight GQA models whose q/k
// projections are sharpened so attention is peaky (sparse and dense really differ): budgets >= n
// reproduce full attention; cache correction restores dense K/V; and the GPU engine's greedy
// tokens under every policy equal the CPU reference engine's (head_dim 128).
#include <algorithm>
#include <cmath>
#include <cstdio>
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

const std::vector<int32_t> kPrompt = {1, 7, 3, 9, 22, 5, 14, 30, 2, 11, 40, 8};

// sparse_attention_test.cc's model (with its own LM head): 6 layers, 4 query heads over 2 KV
// heads of 8, context 128.
model::ModelConfig config6() {
  testing::TinyLlama t;
  t.layers = 6;
  t.head_dim = 8;
  t.context = 128;
  t.vocab = 48;
  t.inter = 48;
  return testing::untied_llama(t);
}

// Budget 64 >= every context here (12 + 40 tokens): each policy must attend every position.
std::vector<AttentionPolicy> covering_policies() {
  return {tidal_policy(64, Granularity::kPerQueryHead, {}),
          tidal_policy(64, Granularity::kPerQueryHead, {4}),
          tidal_policy(64, Granularity::kPerKvHead, {}),
          tidal_policy(64, Granularity::kPerKvHead, {3, 5}),
          tidal_policy(64, Granularity::kShared, {}),
          tidal_policy(64, Granularity::kShared, {4}),
          quest_policy(64, 8)};
}

class BudgetCoveringContextCuda : public ::testing::TestWithParam<DType> {};

TEST_P(BudgetCoveringContextCuda, EqualsFullAttention) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const DType dtype = GetParam();
  const model::LlamaWeights host = testing::host_weights(config6(), 19);
  EngineConfig cfg = testing::gpu_config(dtype);
  cfg.page_size = 8;
  cfg.max_batch = 2;
  auto e = testing::make_engine(config6(), host, cfg);
  ASSERT_TRUE(e);
  // The reference: full attention, greedy, 41 tokens (contexts 12..52).
  const std::vector<int32_t> full_greedy = testing::greedy_tokens(*e, kPrompt, 41);
  ASSERT_EQ(full_greedy.size(), 41u);
  const std::vector<int32_t> forced(full_greedy.begin(), full_greedy.end() - 1);
  const auto full = testing::forced_logits(*e, kPrompt, AttentionPolicy(), forced);
  ASSERT_EQ(full.size(), 41u);
  // Teacher forcing reproduces the greedy run (the forced logits pick the same tokens).
  for (size_t step = 0; step < full.size(); ++step) {
    EXPECT_EQ(testing::argmax_of(full[step]), full_greedy[step]) << "step " << step;
  }
  const testing::Tolerance tol = testing::tolerance(dtype);
  for (const AttentionPolicy& p : covering_policies()) {
    const auto got = testing::forced_logits(*e, kPrompt, p, forced);
    ASSERT_EQ(got.size(), full.size());
    for (size_t step = 0; step < full.size(); ++step) {
      ASSERT_TRUE(testing::all_close(got[step], full[step], tol.atol, tol.rtol))
          << testing::policy_name(p) << " step " << step;
    }
    // bf16 rounds in different places under lists and ranges: only f32 promises equal argmaxes.
    if (dtype == DType::kF32) {
      EXPECT_EQ(testing::greedy_tokens(*e, kPrompt, 41, p), full_greedy) << testing::policy_name(p);
    }
  }
  EXPECT_GT(e->graphs_captured(), 0);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, BudgetCoveringContextCuda,
                         ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// A wider model for the correction test: 4 query heads over 2 KV heads of 64.
model::ModelConfig config_hd64() {
  testing::TinyLlama t;
  t.layers = 6;
  t.head_dim = 64;
  t.context = 128;
  t.vocab = 64;
  t.inter = 128;
  return testing::untied_llama(t);
}

TEST(CorrectionCuda, RestoresDenseKvAndGenerationContinues) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const model::ModelConfig c = config_hd64();
  const model::LlamaWeights host = testing::host_weights(c, 23);
  EngineConfig cfg = testing::gpu_config(DType::kF32);
  cfg.page_size = 8;
  cfg.max_batch = 2;
  auto sparse = testing::make_engine(c, host, cfg);
  auto dense = testing::make_engine(c, host, cfg);
  ASSERT_TRUE(sparse && dense);
  const std::vector<int32_t> forced = {3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18};
  const AttentionPolicy policy = tidal_policy(4, Granularity::kPerQueryHead, {});
  SeqId s, d;
  testing::forced_logits(*sparse, kPrompt, policy, forced, &s);
  // The same tokens, prefilled densely in the other engine.
  std::vector<int32_t> all = kPrompt;
  all.insert(all.end(), forced.begin(), forced.end());
  ASSERT_TRUE(dense->add_sequence(all, policy, &d).ok());
  ASSERT_TRUE(dense->prefill(d, TensorView()).ok());
  const int64_t n = int64_t(all.size()), prompt = int64_t(kPrompt.size());
  ASSERT_EQ(sparse->length(s), n);

  // Largest |sparse - dense| over K and V of every layer at positions [begin, end), and whether
  // every element is within f32 tolerance (first failure reported).
  auto compare = [&](int64_t begin, int64_t end, double* worst) {
    *worst = 0;
    ::testing::AssertionResult all_ok = ::testing::AssertionSuccess();
    for (int64_t layer = 0; layer < c.num_layers; ++layer) {
      for (int64_t pos = begin; pos < end; ++pos) {
        std::vector<float> ks, vs, kd, vd;
        EXPECT_TRUE(sparse->read_kv(s, layer, pos, &ks, &vs).ok());
        EXPECT_TRUE(dense->read_kv(d, layer, pos, &kd, &vd).ok());
        EXPECT_EQ(ks.size(), size_t(c.kv_dim()));
        for (size_t i = 0; i < std::min(ks.size(), kd.size()); ++i) {
          for (double e : {double(std::fabs(ks[i] - kd[i])), double(std::fabs(vs[i] - vd[i]))}) {
            *worst = std::isnan(e) ? INFINITY : std::max(*worst, e);  // NaN: as far off as it gets
          }
        }
        for (auto [got, want] : {std::pair{&ks, &kd}, std::pair{&vs, &vd}}) {
          auto r = testing::all_close(*got, *want, 1e-4f, 1e-4f);
          if (!r && all_ok) {
            all_ok = ::testing::AssertionFailure()
                     << "layer " << layer << " position " << pos << ": " << r.message();
          }
        }
      }
    }
    return all_ok;
  };
  double worst = 0;
  // Sparse decoding polluted the K/V of the fed tokens (layers after the first sparse layer),
  // not the prompt's.
  EXPECT_TRUE(compare(0, prompt, &worst));
  EXPECT_FALSE(compare(prompt, n, &worst));
  EXPECT_GT(worst, 1e-2);
  std::printf("sparse decoding moved the fed tokens' K/V by up to %.3g\n", worst);
  // One pass over the last 16 tokens (all that sparse decoding wrote) restores dense K/V.
  ASSERT_TRUE(sparse->correct(s, n - prompt).ok());
  EXPECT_TRUE(compare(0, n, &worst));
  EXPECT_EQ(sparse->stats(s).correction_passes, 1);
  EXPECT_EQ(sparse->stats(s).correction_tokens, 16);
  // And decoding continues as from a densely built cache.
  const int64_t vocab = c.vocab;
  std::vector<float> a(static_cast<size_t>(vocab)), b(static_cast<size_t>(vocab));
  ASSERT_TRUE(sparse->decode({s}, {19}, make_view(a.data(), DType::kF32, {1, vocab})).ok());
  ASSERT_TRUE(dense->decode({d}, {19}, make_view(b.data(), DType::kF32, {1, vocab})).ok());
  EXPECT_TRUE(testing::all_close(a, b, 1e-4f, 1e-3f));
}

// head_dim 128 (the production size), GQA 2:1, 6 layers: dense 0-1, selection at 2, sparse 3,
// re-selection at 4, sparse 5.
model::ModelConfig config_hd128() {
  testing::TinyLlama t;
  t.layers = 6;
  t.heads = 2;
  t.kv_heads = 1;
  t.head_dim = 128;
  t.context = 256;
  t.vocab = 128;
  t.inter = 256;
  return testing::untied_llama(t);
}

TEST(CpuVsCuda, GreedyTokensAndLogitsEqualUnderEveryPolicy) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const model::ModelConfig c = config_hd128();
  const model::LlamaWeights host = testing::host_weights(c, 31);
  auto gpu = testing::make_engine(c, host, testing::gpu_config(DType::kF32));
  auto cpu = testing::make_engine(c, host, EngineConfig());
  ASSERT_TRUE(gpu && cpu);
  const std::vector<int32_t> prompt = testing::random_prompt(40, c.vocab, 5);
  // Budgets well below the context (40..72 tokens): the lists really are sparse.
  const std::vector<AttentionPolicy> policies = {
      AttentionPolicy(),
      tidal_policy(16, Granularity::kPerQueryHead, {4}),
      tidal_policy(16, Granularity::kPerKvHead, {}),
      tidal_policy(16, Granularity::kShared, {4}),
      quest_policy(32, 16)};
  std::vector<std::vector<int32_t>> runs;
  for (const AttentionPolicy& p : policies) {
    // 33 tokens: the one after the prompt and 32 decode steps.
    const std::vector<int32_t> want = testing::greedy_tokens(*cpu, prompt, 33, p);
    ASSERT_EQ(want.size(), 33u);
    const std::vector<int32_t> forced(want.begin(), want.end() - 1);
    const auto lc = testing::forced_logits(*cpu, prompt, p, forced);
    ASSERT_EQ(lc.size(), want.size());
    const std::vector<int32_t> got = testing::greedy_tokens(*gpu, prompt, 33, p);
    const size_t agree = testing::agreeing_prefix(got, want);
    EXPECT_EQ(got, want) << testing::policy_name(p) << ": first difference at token " << agree
                         << ", where the CPU's top-2 logit margin was "
                         << (agree < lc.size() ? testing::top2_margin(lc[agree]) : 0.0f);
    // The same forced steps give the same logits.
    const auto lg = testing::forced_logits(*gpu, prompt, p, forced);
    ASSERT_EQ(lc.size(), lg.size());
    for (size_t step = 0; step < lc.size(); ++step) {
      ASSERT_TRUE(testing::all_close(lg[step], lc[step], 1e-4f, 1e-3f))
          << testing::policy_name(p) << " step " << step;
    }
    runs.push_back(want);
  }
  // The sparse policies are not all the same computation as full on this model.
  EXPECT_TRUE(std::any_of(runs.begin() + 1, runs.end(),
                          [&](const std::vector<int32_t>& r) { return r != runs[0]; }));
}

}  // namespace
}  // namespace tidal::engine
