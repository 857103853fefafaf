// SPDX-License-Identifier: Apache-2.0
// The long-context benchmark path on the GPU: Engine::add_random_sequence fills 5000 cached
// positions with seeded random K/V, and every policy decodes 8 steps over them; the statistics
// count the KV rows each policy's layers read, and the persistence counters kept on the device
// count every re-selected list.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "runtime/engine/engine.h"
#include "tests/testing/engine_cuda.h"
#include "tests/testing/model_config.h"

namespace tidal::engine {
namespace {

using model::AttentionKind;
using model::AttentionPolicy;
using model::Granularity;
using model::LayerRole;
using testing::quest_policy;
using testing::tidal_policy;

constexpr int64_t kLength = 5000;
constexpr int64_t kSteps = 8;
constexpr int64_t kBudget = 256;

// Llama-shaped heads at a small width: 8 query heads over 2 KV heads of 128, 6 layers (dense
// 0-1; tidal selects at 2, re-selects at 4, sparse 3 and 5; Quest from layer 2).
model::ModelConfig config() {
  testing::TinyLlama t;
  t.layers = 6;
  t.heads = 8;
  t.kv_heads = 2;
  t.head_dim = 128;
  t.context = 8192;
  t.vocab = 256;
  t.inter = 1024;
  return testing::tiny_llama(t);
}

struct RandomRun {
  std::vector<std::vector<float>> logits;  // per step
  model::AttentionStats stats;
};

// A random 5000-position sequence under `policy`, decoded greedily for kSteps steps.
RandomRun decode_random(Engine& e, const AttentionPolicy& policy) {
  const int64_t vocab = e.model_config().vocab;
  SequenceOptions o;
  o.attention = policy;
  o.sampling.temperature = 0;
  SeqId id;
  Status st = e.add_random_sequence(kLength, o, /*seed=*/11, &id);
  EXPECT_TRUE(st.ok()) << st.to_string();
  RandomRun r;
  if (!st.ok()) return r;
  EXPECT_EQ(e.length(id), kLength);
  int32_t token = 1;
  std::vector<int32_t> sampled;
  for (int64_t step = 0; step < kSteps; ++step) {
    std::vector<float> logits(static_cast<size_t>(vocab));
    st = e.decode({id}, {token}, make_view(logits.data(), DType::kF32, {1, vocab}), &sampled);
    EXPECT_TRUE(st.ok()) << testing::policy_name(policy) << ": " << st.to_string();
    if (!st.ok()) break;
    for (float l : logits) EXPECT_TRUE(std::isfinite(l)) << testing::policy_name(policy);
    EXPECT_TRUE(sampled[0] >= 0 && sampled[0] < vocab) << sampled[0];
    EXPECT_EQ(sampled[0], testing::argmax_of(logits));
    token = sampled[0];
    r.logits.push_back(std::move(logits));
  }
  r.stats = e.stats(id);
  e.release(id);
  return r;
}

TEST(RandomKvCuda, EveryPolicyDecodesOver5000PositionsAndCountsItsRows) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const model::ModelConfig c = config();
  EngineConfig cfg = testing::gpu_config(DType::kBF16);
  cfg.max_batch = 2;
  model::LlamaWeights w;
  ASSERT_TRUE(model::init_random_llama_weights(c, 3, &w, {cfg.dtype, cfg.device}).ok());
  std::unique_ptr<Engine> e;
  const Status st = Engine::create(c, std::move(w), cfg, &e);
  ASSERT_TRUE(st.ok()) << st.to_string();

  const int64_t kvh = c.num_kv_heads, heads = c.num_heads, page = cfg.page_size;
  // Sum of the context n = position + 1 over the steps: 5001 .. 5008.
  int64_t sum_n = 0;
  for (int64_t n = kLength + 1; n <= kLength + kSteps; ++n) sum_n += n;

  const RandomRun full = decode_random(*e, AttentionPolicy());
  ASSERT_EQ(full.logits.size(), size_t(kSteps));
  EXPECT_EQ(full.stats.decode_steps, kSteps);
  EXPECT_EQ(full.stats.layer_steps[int(LayerRole::kDense)], 6 * kSteps);
  EXPECT_EQ(full.stats.rows[int(LayerRole::kDense)], 6 * kvh * sum_n);  // every row, every layer

  for (Granularity g :
       {Granularity::kPerQueryHead, Granularity::kPerKvHead, Granularity::kShared}) {
    const AttentionPolicy p = tidal_policy(kBudget, g, {4});
    const RandomRun r = decode_random(*e, p);
    ASSERT_EQ(r.logits.size(), size_t(kSteps)) << testing::policy_name(p);
    const model::AttentionStats& s = r.stats;
    const int64_t lists = model::num_lists(g, c);  // 8, 2 or 1
    EXPECT_EQ(s.decode_steps, kSteps);
    EXPECT_EQ(s.layer_steps[int(LayerRole::kDense)], 2 * kSteps);
    EXPECT_EQ(s.layer_steps[int(LayerRole::kSelect)], 2 * kSteps);
    EXPECT_EQ(s.layer_steps[int(LayerRole::kSparse)], 2 * kSteps);
    EXPECT_EQ(s.rows[int(LayerRole::kDense)], 2 * kvh * sum_n);
    EXPECT_EQ(s.rows[int(LayerRole::kSelect)], 2 * kvh * sum_n);
    // Sparse layer-steps read K rows per list; a shared list is read once per KV head.
    const int64_t row_lists = g == Granularity::kShared ? kvh : lists;
    EXPECT_EQ(s.rows[int(LayerRole::kSparse)], 2 * kSteps * row_lists * kBudget)
        << testing::policy_name(p);
    // On the device: layer 4's re-selection compared every list of K positions with layer 2's.
    EXPECT_EQ(s.overlap_total, kSteps * lists * kBudget) << testing::policy_name(p);
    EXPECT_GE(s.overlap_kept, 0);
    EXPECT_LE(s.overlap_kept, s.overlap_total);
    // Attending 256 of 5000 positions in two layers changes the output.
    EXPECT_FALSE(testing::all_close(r.logits[0], full.logits[0], 1e-3f, 1e-3f))
        << testing::policy_name(p);
  }

  const AttentionPolicy q = quest_policy(2 * kBudget, page);
  const RandomRun r = decode_random(*e, q);
  ASSERT_EQ(r.logits.size(), size_t(kSteps));
  EXPECT_EQ(r.stats.layer_steps[int(LayerRole::kDense)], 2 * kSteps);
  EXPECT_EQ(r.stats.layer_steps[int(LayerRole::kQuest)], 4 * kSteps);
  // Each head reads its chosen pages: 31 whole ones and the partial current page.
  int64_t quest_rows = 0, metadata = 0;
  for (int64_t n = kLength + 1; n <= kLength + kSteps; ++n) {
    const int64_t pages = (n + page - 1) / page;  // 313
    const int64_t current = n - (pages - 1) * page;
    quest_rows += 4 * heads * ((2 * kBudget / page - 1) * page + current);
    metadata += 4 * 2 * (pages - 1) * kvh;  // min and max bounds of every earlier page
  }
  EXPECT_EQ(r.stats.rows[int(LayerRole::kQuest)], quest_rows);
  EXPECT_EQ(r.stats.quest_metadata_rows, metadata);
  EXPECT_FALSE(testing::all_close(r.logits[0], full.logits[0], 1e-3f, 1e-3f));

  // The same seed makes the same cache: a second full run replays the first, bit for bit.
  const RandomRun again = decode_random(*e, AttentionPolicy());
  ASSERT_EQ(again.logits.size(), full.logits.size());
  for (size_t step = 0; step < full.logits.size(); ++step) {
    EXPECT_TRUE(testing::all_close(again.logits[step], full.logits[step], 0, 0)) << step;
  }
  EXPECT_EQ(e->kv_tokens_in_use(), 0);
}

}  // namespace
}  // namespace tidal::engine
