// SPDX-License-Identifier: Apache-2.0
// Engine::fork: a sequence forked from a prefilled prompt decodes exactly as the prompt prefilled
// afresh under the same policy (every policy: the copied K/V and Quest page bounds are the
// prefill's), and the source is left untouched.
#include <memory>

#include "runtime/engine/engine.h"
#include "tests/testing/model_config.h"
#include "tests/testing/testing.h"

namespace tidal::engine {
namespace {

using model::AttentionKind;
using model::AttentionPolicy;

model::ModelConfig config() {
  testing::TinyLlama t;
  t.layers = 5;
  t.head_dim = 8;
  t.context = 128;
  t.vocab = 48;
  t.inter = 48;
  return testing::tiny_llama(t);
}

std::unique_ptr<Engine> make_engine() {
  model::LlamaWeights w;
  EXPECT_TRUE(model::init_random_llama_weights(config(), 23, &w).ok());
  for (const model::LayerWeights& l : w.layers) {  // sharp attention: sparse != dense
    for (TensorView t : {l.wq, l.wk}) {
      for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] *= 25.0f;
    }
  }
  EngineConfig cfg;
  cfg.page_size = 8;
  cfg.max_batch = 4;
  // A step plan holds few block-table updates (about max_batch + prefill_chunk / page_size):
  // fewer than the prompt's 13 pages, which a fork must still get onto the device.
  cfg.prefill_chunk = 16;
  std::unique_ptr<Engine> e;
  const Status st = Engine::create(config(), std::move(w), cfg, &e);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return e;
}

std::vector<AttentionPolicy> policies() {
  AttentionPolicy full, tidal, quest;
  tidal.kind = AttentionKind::kTidal;
  tidal.tidal.budget = 6;
  tidal.tidal.reselect_layers = std::vector<int64_t>{3};
  quest.kind = AttentionKind::kQuest;
  quest.quest.budget = 16;
  quest.quest.page_size = 8;
  return {full, tidal, quest};
}

// 101 tokens: 12 full pages of 8 and a partial one.
std::vector<int32_t> prompt() {
  std::vector<int32_t> p;
  for (int i = 0; i < 101; ++i) p.push_back(int32_t(1 + (i * 17) % 47));
  return p;
}

// Feeds `forced` to `id` one step at a time; the logits after each.
std::vector<float> decode_all(Engine& e, SeqId id, const std::vector<int32_t>& forced) {
  const int64_t vocab = e.model_config().vocab;
  std::vector<float> all;
  std::vector<float> row(static_cast<size_t>(vocab));
  for (int32_t t : forced) {
    const Status st = e.decode({id}, {t}, make_view(row.data(), DType::kF32, {1, vocab}));
    EXPECT_TRUE(st.ok()) << st.to_string();
    all.insert(all.end(), row.begin(), row.end());
  }
  return all;
}

const std::vector<int32_t> kForced = {5, 9, 12, 33, 7, 21, 40, 3, 18, 26, 11};

TEST(EngineFork, ForkDecodesAsAFreshPrefillUnderEveryPolicy) {
  std::unique_ptr<Engine> e = make_engine();
  for (const AttentionPolicy& p : policies()) {
    SCOPED_TRACE(model::attention_kind_name(p.kind));
    SequenceOptions opts;
    opts.attention = p;
    SeqId fresh, source, forked;
    ASSERT_TRUE(e->add_sequence(prompt(), opts, &fresh).ok());
    ASSERT_TRUE(e->prefill(fresh, TensorView()).ok());
    const std::vector<float> want = decode_all(*e, fresh, kForced);
    e->release(fresh);

    ASSERT_TRUE(e->add_sequence(prompt(), &source).ok());  // prefilled under full
    ASSERT_TRUE(e->prefill(source, TensorView()).ok());
    ASSERT_TRUE(e->fork(source, opts, &forked).ok());
    EXPECT_EQ(e->length(forked), int64_t(prompt().size()));
    const std::vector<float> got = decode_all(*e, forked, kForced);
    EXPECT_EQ(got, want);  // bit for bit: the same K/V, the same arithmetic
    e->release(forked);
    e->release(source);
  }
}

TEST(EngineFork, SourceIsUntouchedAndForksAreIndependent) {
  std::unique_ptr<Engine> e = make_engine();
  SeqId a, b, source;
  ASSERT_TRUE(e->add_sequence(prompt(), &source).ok());
  ASSERT_TRUE(e->prefill(source, TensorView()).ok());
  SequenceOptions opts;
  ASSERT_TRUE(e->fork(source, opts, &a).ok());
  const std::vector<float> first = decode_all(*e, a, kForced);
  // The source decodes as the fork did: the fork's steps wrote only its own pages.
  EXPECT_EQ(decode_all(*e, source, kForced), first);
  // A second fork, taken after the source itself decoded, starts from the longer sequence.
  ASSERT_TRUE(e->fork(source, opts, &b).ok());
  EXPECT_EQ(e->length(b), int64_t(prompt().size() + kForced.size()));
}

TEST(EngineFork, RefusesUnprefilledAndUnknownSequences) {
  std::unique_ptr<Engine> e = make_engine();
  SeqId source, out;
  ASSERT_TRUE(e->add_sequence(prompt(), &source).ok());
  EXPECT_FALSE(e->fork(source, SequenceOptions(), &out).ok());  // not prefilled
  EXPECT_FALSE(e->fork(source + 100, SequenceOptions(), &out).ok());
  // No free slot left: the fork fails cleanly.
  ASSERT_TRUE(e->prefill(source, TensorView()).ok());
  SeqId x;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(e->fork(source, SequenceOptions(), &x).ok());
  EXPECT_EQ(e->fork(source, SequenceOptions(), &out).code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace tidal::engine
