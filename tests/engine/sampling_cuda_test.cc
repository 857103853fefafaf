// SPDX-License-Identifier: Apache-2.0
// Sampling on the GPU (kernels::sample_tokens at the end of every step): a seed fixes the tokens
// on any engine and in any batch, other seeds give other tokens, and every draw lies in the
// vocabulary and inside the top-k / top-p set of its own logits.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "runtime/engine/engine.h"
#include "runtime/engine/generate.h"
#include "tests/testing/engine_cuda.h"
#include "tests/testing/model_config.h"

namespace tidal::engine {
namespace {

// 4 layers, 4 query heads over 2 KV heads of 64, vocab 64.
model::ModelConfig config() {
  testing::TinyLlama t;
  t.layers = 4;
  t.head_dim = 64;
  t.context = 128;
  t.vocab = 64;
  t.inter = 128;
  return testing::untied_llama(t);
}

// Logits with a spread of about 3 (the final norm scaled by 10): top-p 0.9 keeps a handful of
// tokens, so the nucleus check below has teeth.
model::LlamaWeights weights() {
  testing::WeightShaping shaping;
  shaping.logit_gain = 10.0f;
  return testing::host_weights(config(), 53, shaping);
}

GenerationRequest sampled_request(uint64_t seed) {
  GenerationRequest r;
  r.prompt = {1, 9, 17, 4, 33, 21};
  r.sampling.temperature = 1.0f;
  r.sampling.top_p = 0.9f;
  r.sampling.seed = seed;
  r.stop.max_new_tokens = 32;
  r.stop.ignore_eos = true;
  return r;
}

std::vector<std::vector<int32_t>> run(Engine& e, const std::vector<GenerationRequest>& reqs) {
  std::vector<GenerationResult> results;
  const Status st =
      generate(e, reqs, nullptr, [](const GenerationEvent&) { return true; }, &results);
  EXPECT_TRUE(st.ok()) << st.to_string();
  std::vector<std::vector<int32_t>> out;
  for (const GenerationResult& r : results) out.push_back(r.tokens);
  return out;
}

TEST(SamplingCuda, SameSeedSameTokensOnTwoEnginesAndInABatchOtherSeedsDiffer) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const model::LlamaWeights host = weights();
  auto a = testing::make_engine(config(), host, testing::gpu_config(DType::kF32));
  auto b = testing::make_engine(config(), host, testing::gpu_config(DType::kF32));
  ASSERT_TRUE(a && b);
  const auto a7 = run(*a, {sampled_request(7)});
  const auto b7 = run(*b, {sampled_request(7)});
  const auto a8 = run(*a, {sampled_request(8)});
  ASSERT_EQ(a7.size(), 1u);
  ASSERT_EQ(a7[0].size(), 32u);
  EXPECT_EQ(a7, b7);                // the same seed on another engine
  EXPECT_EQ(run(*a, {sampled_request(7)}), a7);  // and again on the same one
  EXPECT_NE(a7, a8);                // another seed
  // In one batch each sequence draws from its own seed and counter.
  const auto batch = run(*a, {sampled_request(8), sampled_request(9), sampled_request(7)});
  ASSERT_EQ(batch.size(), 3u);
  EXPECT_EQ(batch[0], a8[0]);
  EXPECT_EQ(batch[2], a7[0]);
  EXPECT_NE(batch[1], a7[0]);
  for (const auto& seq : {a7[0], a8[0], batch[1]}) {
    for (int32_t t : seq) EXPECT_TRUE(t >= 0 && t < config().vocab) << t;
  }
}

// Whether `id` survives top-k and top-p filtering of `logits` at temperature 1
// (kernels/sample_tokens.h): with weights w = exp(l - max), top-k keeps ids whose logit is >= the
// k-th largest; top-p keeps an id when the kept weight strictly above it is below top_p of the
// kept mass. `slack` absorbs f32 rounding at the cut.
bool kept(const std::vector<float>& logits, int32_t id, int32_t top_k, float top_p) {
  std::vector<float> sorted = logits;
  std::sort(sorted.begin(), sorted.end(), std::greater<float>());
  const float kth = top_k > 0 ? sorted[size_t(top_k - 1)] : -INFINITY;
  if (logits[size_t(id)] < kth) return false;
  double mass = 0, above = 0;
  for (float l : logits) {
    if (l < kth) continue;
    const double w = std::exp(double(l) - double(sorted[0]));
    mass += w;
    if (l > logits[size_t(id)]) above += w;
  }
  const double slack = 1e-4;
  return above < double(top_p) * mass + slack;
}

TEST(SamplingCuda, DrawsLieInTheVocabularyAndInsideTopKAndTopP) {
  TIDAL_SKIP_WITHOUT_CUDA();
  auto e = testing::make_engine(config(), weights(), testing::gpu_config(DType::kF32));
  ASSERT_TRUE(e);
  const int64_t vocab = config().vocab;
  // Two sequences in one batch: top-p 0.9, and top-k 3 (top-p off).
  struct Setting {
    int32_t top_k;
    float top_p;
  };
  const std::vector<Setting> settings = {{0, 0.9f}, {3, 1.0f}};
  std::vector<SeqId> ids(settings.size());
  std::vector<int32_t> next(settings.size());
  for (size_t i = 0; i < settings.size(); ++i) {
    SequenceOptions o;
    o.sampling.temperature = 1.0f;
    o.sampling.top_k = settings[i].top_k;
    o.sampling.top_p = settings[i].top_p;
    o.sampling.seed = 100 + i;
    ASSERT_TRUE(e->add_sequence({1, int32_t(5 + i), 12, 30}, o, &ids[i]).ok());
    std::vector<float> logits(static_cast<size_t>(vocab));
    ASSERT_TRUE(e->prefill(ids[i], make_view(logits.data(), DType::kF32, {vocab}), &next[i]).ok());
    EXPECT_TRUE(kept(logits, next[i], settings[i].top_k, settings[i].top_p)) << next[i];
  }
  std::vector<float> logits(settings.size() * size_t(vocab));
  std::vector<int32_t> sampled;
  int not_greedy = 0, draws = 0;
  for (int step = 0; step < 40; ++step) {
    ASSERT_TRUE(e->decode(ids, next,
                          make_view(logits.data(), DType::kF32, {int64_t(ids.size()), vocab}),
                          &sampled)
                    .ok());
    ASSERT_EQ(sampled.size(), ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      ASSERT_TRUE(sampled[i] >= 0 && sampled[i] < vocab) << sampled[i];
      const std::vector<float> row(logits.begin() + long(i) * vocab,
                                   logits.begin() + long(i + 1) * vocab);
      EXPECT_TRUE(kept(row, sampled[i], settings[i].top_k, settings[i].top_p))
          << "sequence " << i << " step " << step << " drew " << sampled[i];
      not_greedy += sampled[i] != testing::argmax_of(row);
      ++draws;
    }
    next = sampled;
  }
  // Temperature 1 really samples: not every draw is the argmax.
  EXPECT_GT(not_greedy, 0) << "of " << draws << " draws";
}

}  // namespace
}  // namespace tidal::engine
