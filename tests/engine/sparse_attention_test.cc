// SPDX-License-Identifier: Apache-2.0
// The attention policies end to end through the engine, on a 6-layer random-weight GQA model
// (and stories260K when ../shared is present): budgets >= n reproduce full attention; lists
// persist across sparse layers and are re-picked at selection layers every step; Quest keeps the
// current page; cache correction restores dense K/V.
#include <algorithm>
#include <cmath>
#include <memory>

#include "runtime/engine/engine.h"
#include "runtime/engine/generate.h"
#include "tests/testing/model_config.h"
#include "tests/testing/testing.h"

namespace tidal::engine {
namespace {

using model::AttentionKind;
using model::AttentionPolicy;
using model::Granularity;
using model::LayerRole;
using model::LayerTrace;

model::ModelConfig config6() {
  testing::TinyLlama t;
  t.layers = 6;
  t.head_dim = 8;
  t.context = 128;
  t.vocab = 48;
  t.inter = 48;
  return testing::tiny_llama(t);
}

// `max_context` 0: the model's 128 tokens; `max_budget` 0: EngineConfig's default.
std::unique_ptr<Engine> engine6(int64_t max_context = 0, int64_t max_budget = 0,
                                int64_t page_size = 8) {
  model::LlamaWeights w;
  EXPECT_TRUE(model::init_random_llama_weights(config6(), 17, &w).ok());
  // Sharper attention than the 0.02 init gives, so sparse and dense attention really differ.
  for (const model::LayerWeights& l : w.layers) {
    for (TensorView t : {l.wq, l.wk}) {
      for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] *= 25.0f;
    }
  }
  EngineConfig cfg;
  cfg.page_size = page_size;
  cfg.max_batch = 2;
  cfg.max_context = max_context;
  if (max_budget > 0) cfg.max_budget = max_budget;
  std::unique_ptr<Engine> e;
  const Status st = Engine::create(config6(), std::move(w), cfg, &e);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return e;
}

AttentionPolicy tidal(int64_t budget, Granularity g, std::vector<int64_t> reselect) {
  AttentionPolicy p;
  p.kind = AttentionKind::kTidal;
  p.tidal.budget = budget;
  p.tidal.granularity = g;
  p.tidal.reselect_layers = std::move(reselect);
  return p;
}

AttentionPolicy quest(int64_t budget, int64_t page) {
  AttentionPolicy p;
  p.kind = AttentionKind::kQuest;
  p.quest.budget = budget;
  p.quest.page_size = page;
  return p;
}

const std::vector<int32_t> kPrompt = {1, 7, 3, 9, 22, 5, 14, 30, 2, 11, 40, 8};

// Prefills kPrompt under `policy`, then feeds `forced` one token per step; returns the logits
// after the prompt and after each fed token.
std::vector<std::vector<float>> forced_logits(Engine& e, const AttentionPolicy& policy,
                                              const std::vector<int32_t>& forced,
                                              std::vector<LayerTrace>* trace = nullptr,
                                              SeqId* keep = nullptr) {
  const int64_t vocab = e.model_config().vocab;
  SeqId id;
  Status st = e.add_sequence(kPrompt, policy, &id);
  EXPECT_TRUE(st.ok()) << st.to_string();
  e.set_trace(id, trace);
  std::vector<std::vector<float>> out(1, std::vector<float>(size_t(vocab)));
  EXPECT_TRUE(e.prefill(id, make_view(out[0].data(), DType::kF32, {vocab})).ok());
  for (int32_t t : forced) {
    out.emplace_back(size_t(vocab));
    st = e.decode({id}, {t}, make_view(out.back().data(), DType::kF32, {1, vocab}));
    EXPECT_TRUE(st.ok()) << st.to_string();
  }
  if (keep != nullptr) {
    *keep = id;
  } else {
    e.release(id);
  }
  return out;
}

std::vector<int32_t> greedy_of(const std::vector<std::vector<float>>& logits) {
  std::vector<int32_t> ids;
  for (const auto& row : logits) {
    ids.push_back(int32_t(std::max_element(row.begin(), row.end()) - row.begin()));
  }
  return ids;
}

TEST(SparseAttention, BudgetAtLeastContextEqualsFullForEveryPolicy) {
  auto e = engine6();
  // The reference continuation: full attention, greedy, 40 tokens (contexts 12..52 <= 64).
  std::vector<int32_t> forced(40, 0);
  const auto full0 = forced_logits(*e, AttentionPolicy(), forced);
  forced = greedy_of(full0);
  forced.pop_back();
  const auto full = forced_logits(*e, AttentionPolicy(), forced);
  const std::vector<AttentionPolicy> policies = {tidal(64, Granularity::kPerQueryHead, {}),
                                                 tidal(64, Granularity::kPerQueryHead, {4}),
                                                 tidal(64, Granularity::kPerKvHead, {}),
                                                 tidal(64, Granularity::kPerKvHead, {3, 5}),
                                                 tidal(64, Granularity::kShared, {}),
                                                 tidal(64, Granularity::kShared, {4}),
                                                 quest(64, 8)};
  for (const AttentionPolicy& p : policies) {
    const auto got = forced_logits(*e, p, forced);
    for (size_t step = 0; step < full.size(); ++step) {
      ASSERT_TRUE(testing::all_close(got[step], full[step], 1e-5f, 1e-4f))
          << model::attention_kind_name(p.kind) << " "
          << model::granularity_name(p.tidal.granularity) << " step " << step;
    }
  }
}

// A budget larger than the context (tidal's default 256 under a --max-context of 60, say) attends
// every position, as full attention does: it is taken, not refused for exceeding lists that
// never need more entries than the context has. 60 is not a multiple of the 8-token pages:
// Quest's lists cover the partial last page too (n reaches 59, the 8th page).
TEST(SparseAttention, BudgetBeyondTheContextEqualsFull) {
  auto e = engine6(/*max_context=*/60);
  std::vector<int32_t> forced(47, 0);
  const auto full0 = forced_logits(*e, AttentionPolicy(), forced);
  forced = greedy_of(full0);
  forced.pop_back();
  const auto full = forced_logits(*e, AttentionPolicy(), forced);
  ASSERT_EQ(full.size(), 48u);
  for (const AttentionPolicy& p :
       {tidal(256, Granularity::kPerQueryHead, {}), tidal(1000000, Granularity::kShared, {4}),
        tidal(61, Granularity::kPerKvHead, {3}), quest(1000, 8), quest(64, 8)}) {
    SeqId id = -1;
    const Status st = e->add_sequence(kPrompt, p, &id);
    ASSERT_TRUE(st.ok()) << st.to_string();
    e->release(id);
    const auto got = forced_logits(*e, p, forced);
    for (size_t step = 0; step < full.size(); ++step) {
      ASSERT_TRUE(testing::all_close(got[step], full[step], 1e-5f, 1e-4f))
          << model::attention_kind_name(p.kind) << " budget "
          << (p.kind == AttentionKind::kQuest ? p.quest.budget : p.tidal.budget) << " step "
          << step;
    }
  }
  // A budget the engine's lists cannot hold while the context has more positions is refused,
  // Quest's too when one page (of 64 tokens) holds the whole context but the lists do not.
  auto small = engine6(/*max_context=*/60, /*max_budget=*/16);
  SeqId id = -1;
  for (const AttentionPolicy& p : {tidal(17, Granularity::kPerQueryHead, {}), quest(1000, 8)}) {
    const Status st = small->add_sequence(kPrompt, p, &id);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find("exceeds the engine's max_budget 16"), std::string::npos)
        << st.message();
  }
  auto one_page = engine6(/*max_context=*/60, /*max_budget=*/32, /*page_size=*/64);
  const Status st = one_page->add_sequence(kPrompt, quest(64, 64), &id);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("exceeds the engine's max_budget 32"), std::string::npos)
      << st.message();
}

TEST(SparseAttention, SmallBudgetsReallyChangeTheOutput) {
  auto e = engine6();
  const std::vector<int32_t> forced = {3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
  const auto full = forced_logits(*e, AttentionPolicy(), forced);
  const auto sparse = forced_logits(*e, tidal(4, Granularity::kPerQueryHead, {}), forced);
  EXPECT_FALSE(testing::all_close(sparse.back(), full.back(), 1e-5f, 1e-4f));
}

TEST(SparseAttention, ListsPersistAcrossSparseLayersAndAreRepickedAtSelectionLayers) {
  auto e = engine6();
  const int64_t budget = 6;
  for (Granularity g :
       {Granularity::kPerQueryHead, Granularity::kPerKvHead, Granularity::kShared}) {
    std::vector<LayerTrace> trace;
    const std::vector<int32_t> forced = {3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    forced_logits(*e, tidal(budget, g, {4}), forced, &trace);
    ASSERT_EQ(trace.size(), forced.size() * 6);  // one entry per decode token and layer
    std::vector<std::vector<int32_t>> previous_step_lists;
    for (size_t step = 0; step < forced.size(); ++step) {
      const LayerTrace* layer = &trace[step * 6];
      const int64_t current = int64_t(kPrompt.size() + step);  // n - 1
      EXPECT_EQ(layer[0].role, LayerRole::kDense);
      EXPECT_EQ(layer[1].role, LayerRole::kDense);
      EXPECT_EQ(layer[2].role, LayerRole::kSelect);
      EXPECT_EQ(layer[3].role, LayerRole::kSparse);
      EXPECT_EQ(layer[4].role, LayerRole::kSelect);
      EXPECT_EQ(layer[5].role, LayerRole::kSparse);
      EXPECT_EQ(int64_t(layer[2].lists.size()), model::num_lists(g, config6()));
      for (int l : {2, 3, 4, 5}) {
        EXPECT_EQ(layer[l].position, current);
        for (const auto& list : layer[l].lists) {
          EXPECT_EQ(int64_t(list.size()), budget);  // exactly K positions (n > K)
          EXPECT_EQ(list.back(), current);          // the current token, always
          EXPECT_TRUE(std::is_sorted(list.begin(), list.end()));
        }
      }
      EXPECT_EQ(layer[3].lists, layer[2].lists);  // sparse layers reuse the latest selection
      EXPECT_EQ(layer[5].lists, layer[4].lists);
      EXPECT_NE(layer[2].lists, previous_step_lists);  // re-picked every step
      previous_step_lists = layer[2].lists;
    }
  }
}

TEST(SparseAttention, SparseLayersReadKRowsPerListAndStatsAddUp) {
  auto e = engine6();
  std::vector<GenerationResult> r;
  GenerationRequest req;
  req.prompt = kPrompt;
  req.sampling.temperature = 0;
  req.stop.max_new_tokens = 21;
  req.stop.ignore_eos = true;
  req.attention = tidal(6, Granularity::kPerKvHead, {4});
  ASSERT_TRUE(generate(
                  *e, {req}, nullptr, [](const GenerationEvent&) { return true; }, &r)
                  .ok());
  const model::AttentionStats& s = r[0].stats;
  EXPECT_EQ(s.decode_steps, 20);
  EXPECT_EQ(s.layer_steps[int(LayerRole::kDense)], 40);
  EXPECT_EQ(s.layer_steps[int(LayerRole::kSelect)], 40);
  EXPECT_EQ(s.layer_steps[int(LayerRole::kSparse)], 40);
  // Per-KV-head lists: 2 lists of exactly 6 rows in each sparse layer-step.
  EXPECT_EQ(s.rows[int(LayerRole::kSparse)], 40 * 2 * 6);
  // Dense and selection layers read every position of both KV heads: n = 13..32 over the steps.
  const int64_t positions = (13 + 32) * 20 / 2;
  EXPECT_EQ(s.rows[int(LayerRole::kDense)], 2 * positions * 2);
  EXPECT_EQ(s.rows[int(LayerRole::kSelect)], 2 * positions * 2);
  EXPECT_EQ(s.overlap_total, 20 * 2 * 6);  // both lists of 6 positions, every step
  EXPECT_GT(s.overlap_percent(), 0.0);
  EXPECT_LE(s.overlap_percent(), 100.0);
}

TEST(SparseAttention, QuestKeepsTheCurrentPageAndDenseLayers) {
  auto e = engine6();
  std::vector<LayerTrace> trace;
  const std::vector<int32_t> forced = {3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18};
  forced_logits(*e, quest(16, 8), forced, &trace);  // 2 pages of 8: the current and one more
  for (const LayerTrace& t : trace) {
    if (t.layer < 2) {
      EXPECT_EQ(t.role, LayerRole::kDense);
      continue;
    }
    ASSERT_EQ(t.role, LayerRole::kQuest);
    const int32_t page_start = int32_t(t.position / 8 * 8);
    for (const auto& list : t.lists) {
      EXPECT_TRUE(std::is_sorted(list.begin(), list.end()));
      EXPECT_EQ(list.back(), t.position);
      for (int32_t p = page_start; p <= t.position; ++p) {  // the whole current page
        EXPECT_TRUE(std::binary_search(list.begin(), list.end(), p)) << p;
      }
      EXPECT_LE(int64_t(list.size()), 16);
      EXPECT_EQ(list.size() % 8, size_t(t.position - page_start + 1) % 8);  // whole pages + cur
    }
  }
}

TEST(SparseAttention, CorrectionRestoresDenseKvAndGenerationContinues) {
  auto sparse = engine6();
  auto dense = engine6();
  const std::vector<int32_t> forced = {3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18};
  const AttentionPolicy policy = tidal(4, Granularity::kPerQueryHead, {});
  SeqId s, d;
  forced_logits(*sparse, policy, forced, nullptr, &s);
  // The same tokens, prefilled densely in the other engine.
  std::vector<int32_t> all = kPrompt;
  all.insert(all.end(), forced.begin(), forced.end());
  ASSERT_TRUE(dense->add_sequence(all, policy, &d).ok());
  std::vector<float> scratch(48);
  ASSERT_TRUE(dense->prefill(d, make_view(scratch.data(), DType::kF32, {48})).ok());

  auto max_kv_diff = [&](int64_t begin, int64_t end) {
    double worst = 0;
    for (int64_t layer = 0; layer < 6; ++layer) {
      for (int64_t pos = begin; pos < end; ++pos) {
        std::vector<float> ks, vs, kd, vd;
        EXPECT_TRUE(sparse->read_kv(s, layer, pos, &ks, &vs).ok());
        EXPECT_TRUE(dense->read_kv(d, layer, pos, &kd, &vd).ok());
        EXPECT_TRUE(ks.size() == kd.size() && vs.size() == vd.size() && ks.size() == vs.size());
        for (size_t i = 0; i < std::min(ks.size(), kd.size()); ++i) {
          for (double e : {double(std::fabs(ks[i] - kd[i])), double(std::fabs(vs[i] - vd[i]))}) {
            worst = std::isnan(e) ? INFINITY : std::max(worst, e);  // NaN: as far off as it gets
          }
        }
      }
    }
    return worst;
  };
  const int64_t n = int64_t(all.size());
  // Sparse decoding polluted the K/V of the fed tokens (positions 12..27), not the prompt's.
  const int64_t prompt = int64_t(kPrompt.size());
  EXPECT_LT(max_kv_diff(0, prompt), 1e-5);
  EXPECT_GT(max_kv_diff(prompt, n), 1e-3);
  // One pass over the last 16 tokens (all that sparse decoding wrote) restores dense K/V.
  ASSERT_TRUE(sparse->correct(s, n - prompt).ok());
  EXPECT_LT(max_kv_diff(0, n), 1e-5);
  EXPECT_EQ(sparse->stats(s).correction_passes, 1);
  EXPECT_EQ(sparse->stats(s).correction_tokens, 16);
  // And decoding continues exactly as from a densely built cache.
  std::vector<float> a(48), b(48);
  ASSERT_TRUE(sparse->decode({s}, {19}, make_view(a.data(), DType::kF32, {1, 48})).ok());
  ASSERT_TRUE(dense->decode({d}, {19}, make_view(b.data(), DType::kF32, {1, 48})).ok());
  EXPECT_TRUE(testing::all_close(a, b, 1e-5f, 1e-4f));
}

// A correction of a sequence with nothing cached yet (not prefilled) has nothing to recompute:
// it is refused, as a correction of 0 tokens is, and the statistics count no pass (it once
// counted a pass of 0 tokens). One asking for more tokens than are cached recomputes them all.
TEST(SparseAttention, CorrectionOfNothingCachedIsRefusedAndNotCounted) {
  auto e = engine6();
  SeqId s;
  ASSERT_TRUE(e->add_sequence(kPrompt, tidal(4, Granularity::kShared, {}), &s).ok());
  const Status st = e->correct(s, 4);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("sequence " + std::to_string(s) + " has nothing cached"),
            std::string::npos)
      << st.message();
  EXPECT_EQ(e->stats(s).correction_passes, 0);
  EXPECT_EQ(e->stats(s).correction_tokens, 0);
  ASSERT_TRUE(e->prefill(s, TensorView()).ok());
  ASSERT_TRUE(e->correct(s, 100).ok());
  EXPECT_EQ(e->stats(s).correction_passes, 1);
  EXPECT_EQ(e->stats(s).correction_tokens, int64_t(kPrompt.size()));
}

TEST(SparseAttention, GenerationSchedulesCorrectionPasses) {
  auto e = engine6();
  GenerationRequest req;
  req.prompt = kPrompt;
  req.sampling.temperature = 0;
  req.stop.max_new_tokens = 26;  // 25 decode steps: passes after steps 8, 16, 24
  req.stop.ignore_eos = true;
  req.attention = tidal(4, Granularity::kShared, {});
  req.attention.correction_interval = 8;
  std::vector<GenerationResult> r;
  ASSERT_TRUE(generate(
                  *e, {req}, nullptr, [](const GenerationEvent&) { return true; }, &r)
                  .ok());
  EXPECT_EQ(r[0].stats.correction_passes, 3);
  EXPECT_EQ(r[0].stats.correction_tokens, 24);
}

// A pass follows a decode step that does not end the sequence: in a context of 16 tokens, after
// at most 14 (a prompt token, and the 15th step fills the context). An interval of 14 runs one
// pass; 15 or more would silently never run one, and is refused naming the largest that can.
TEST(SparseAttention, CorrectionIntervalBeyondTheContextIsRefused) {
  auto e = engine6(/*max_context=*/16);
  GenerationRequest req;
  req.prompt = {1};
  req.sampling.temperature = 0;
  req.stop.max_new_tokens = 100;
  req.stop.ignore_eos = true;
  req.attention = tidal(4, Granularity::kShared, {});
  req.attention.correction_interval = 14;
  std::vector<GenerationResult> r;
  const auto quiet = [](const GenerationEvent&) { return true; };
  ASSERT_TRUE(generate(*e, {req}, nullptr, quiet, &r).ok());
  EXPECT_EQ(r[0].finish, FinishReason::kContext);
  EXPECT_EQ(r[0].stats.correction_passes, 1);
  EXPECT_EQ(r[0].stats.correction_tokens, 14);
  for (int64_t interval : {int64_t(15), int64_t(16), int64_t(1) << 40}) {
    req.attention.correction_interval = interval;
    const Status st = generate(*e, {req}, nullptr, quiet, &r);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << interval;
    EXPECT_NE(st.message().find("correction_interval " + std::to_string(interval) +
                                " never runs a pass in a context of 16 tokens"),
              std::string::npos)
        << st.message();
    EXPECT_NE(st.message().find("at most 14"), std::string::npos) << st.message();
  }
  EXPECT_EQ(e->kv_tokens_in_use(), 0);
}

TEST(SparseAttention, BadPoliciesFailTheRequest) {
  auto e = engine6();
  GenerationRequest req;
  req.prompt = kPrompt;
  req.attention = tidal(1, Granularity::kPerQueryHead, {});
  std::vector<GenerationResult> r;
  Status st = generate(
      *e, {req}, nullptr, [](const GenerationEvent&) { return true; }, &r);
  EXPECT_NE(st.message().find("tidal budget must be >= 2"), std::string::npos) << st.message();
  req.attention = tidal(8, Granularity::kPerQueryHead, {9});
  st = generate(
      *e, {req}, nullptr, [](const GenerationEvent&) { return true; }, &r);
  EXPECT_NE(st.message().find("reselect_layers: layer 9 is outside the 6 layers"),
            std::string::npos);
  req.attention = quest(4, 8);
  st = generate(
      *e, {req}, nullptr, [](const GenerationEvent&) { return true; }, &r);
  EXPECT_NE(st.message().find("below one page"), std::string::npos);
}

}  // namespace
}  // namespace tidal::engine
