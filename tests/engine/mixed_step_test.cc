// SPDX-License-Identifier: Apache-2.0
// Engine::step, the mixed step of continuous batching: decode tokens of several sequences and
// prefill chunks of others in one forward give exactly the logits, samples and K/V of separate
// prefill and decode calls; a correction chunk beside its own sequence's decode token equals
// correct() then decode(); bad chunks are refused without changing anything.
#include <memory>
#include <vector>

#include "runtime/engine/engine.h"
#include "tests/testing/model_config.h"
#include "tests/testing/testing.h"

namespace tidal::engine {
namespace {

model::ModelConfig config4() {
  testing::TinyLlama t;
  t.layers = 4;
  t.head_dim = 8;
  t.context = 128;
  t.vocab = 48;
  t.inter = 48;
  return testing::tiny_llama(t);
}

std::unique_ptr<Engine> engine4(int64_t prefill_chunk = 16) {
  model::LlamaWeights w;
  EXPECT_TRUE(model::init_random_llama_weights(config4(), 23, &w).ok());
  for (const model::LayerWeights& l : w.layers) {  // sharper attention: sparse != dense
    for (TensorView t : {l.wq, l.wk}) {
      for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] *= 25.0f;
    }
  }
  EngineConfig cfg;
  cfg.page_size = 8;
  cfg.max_batch = 8;
  cfg.prefill_chunk = prefill_chunk;
  std::unique_ptr<Engine> e;
  const Status st = Engine::create(config4(), std::move(w), cfg, &e);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return e;
}

std::vector<int32_t> prompt(int64_t n, int32_t salt) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[size_t(i)] = int32_t((i * 7 + salt * 13) % 47 + 1);
  return p;
}

SequenceOptions tidal_options(int64_t budget, uint64_t seed) {
  SequenceOptions o;
  o.attention.kind = model::AttentionKind::kTidal;
  o.attention.tidal.budget = budget;
  o.attention.tidal.reselect_layers = std::vector<int64_t>{3};
  o.sampling.temperature = 0.9f;
  o.sampling.seed = seed;
  return o;
}

std::vector<float> rows(const std::vector<float>& all, int64_t row, int64_t vocab) {
  return std::vector<float>(all.begin() + row * vocab, all.begin() + (row + 1) * vocab);
}

// Two sequences decoding (tidal, quest) and one (full) being prefilled, as one step and as
// separate calls, from identical states.
TEST(MixedStep, EqualsSeparatePrefillAndDecode) {
  auto e = engine4();
  const int64_t vocab = e->model_config().vocab;
  SequenceOptions quest;
  quest.attention.kind = model::AttentionKind::kQuest;
  quest.attention.quest.budget = 16;
  quest.attention.quest.page_size = 8;
  quest.sampling.temperature = 0.7f;
  quest.sampling.seed = 5;
  const std::vector<SequenceOptions> options = {tidal_options(8, 3), quest, SequenceOptions()};
  const std::vector<std::vector<int32_t>> prompts = {prompt(40, 1), prompt(23, 2), prompt(13, 3)};
  // Sequences 0 and 1 decode, 2 is prefilled (13 tokens: one chunk, sampled at its end).
  std::vector<float> want(static_cast<size_t>(3 * vocab)), got(static_cast<size_t>(3 * vocab));
  std::vector<int32_t> want_ids, got_ids;
  std::vector<SeqId> sep(3), mix(3);
  for (int set = 0; set < 2; ++set) {
    std::vector<SeqId>& ids = set == 0 ? sep : mix;
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(e->add_sequence(prompts[i], options[i], &ids[i]).ok());
    for (int i = 0; i < 2; ++i) ASSERT_TRUE(e->prefill(ids[i], TensorView()).ok());
  }
  // Separate: decode 0 and 1 together, then prefill 2.
  ASSERT_TRUE(e->decode({sep[0], sep[1]}, {5, 9}, make_view(want.data(), DType::kF32, {2, vocab}),
                        &want_ids)
                  .ok());
  int32_t first = -1;
  ASSERT_TRUE(
      e->prefill(sep[2], make_view(want.data() + 2 * vocab, DType::kF32, {vocab}), &first).ok());
  want_ids.push_back(first);
  // Mixed: one step.
  const std::vector<StepChunk> chunks = {StepChunk{mix[2], 0, 13, true, false}};
  const Status st = e->step({mix[0], mix[1]}, {5, 9}, chunks,
                            make_view(got.data(), DType::kF32, {3, vocab}), &got_ids);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(got_ids, want_ids);
  for (int64_t r = 0; r < 3; ++r) EXPECT_EQ(rows(got, r, vocab), rows(want, r, vocab)) << r;
  // The K/V written for every position of every sequence are the same too.
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(e->length(mix[i]), e->length(sep[i]));
    for (int64_t layer : {0, 3}) {
      for (int64_t pos = 0; pos < e->length(mix[i]); pos += 5) {
        std::vector<float> k0, v0, k1, v1;
        ASSERT_TRUE(e->read_kv(sep[i], layer, pos, &k0, &v0).ok());
        ASSERT_TRUE(e->read_kv(mix[i], layer, pos, &k1, &v1).ok());
        EXPECT_EQ(k0, k1);
        EXPECT_EQ(v0, v1);
      }
    }
  }
  // The sequences go on identically, sampling counters included.
  std::vector<int32_t> a, b;
  ASSERT_TRUE(e->decode(sep, {want_ids[0], want_ids[1], want_ids[2]}, TensorView(), &a).ok());
  ASSERT_TRUE(e->decode(mix, {got_ids[0], got_ids[1], got_ids[2]}, TensorView(), &b).ok());
  EXPECT_EQ(a, b);
  EXPECT_EQ(e->stats(sep[0]).rows[int(model::LayerRole::kSparse)],
            e->stats(mix[0]).rows[int(model::LayerRole::kSparse)]);
}

// A prompt prefilled chunk by chunk beside decode steps equals one prefill() of it.
TEST(MixedStep, ChunkedPrefillBesideDecodingEqualsPrefill) {
  auto e = engine4(/*prefill_chunk=*/16);
  const int64_t vocab = e->model_config().vocab;
  const std::vector<int32_t> p = prompt(45, 4);
  SeqId alone, chunked, other;
  ASSERT_TRUE(e->add_sequence(p, tidal_options(8, 1), &alone).ok());
  ASSERT_TRUE(e->add_sequence(p, tidal_options(8, 1), &chunked).ok());
  ASSERT_TRUE(e->add_sequence(prompt(9, 5), SequenceOptions(), &other).ok());
  std::vector<float> want(static_cast<size_t>(vocab)), got(static_cast<size_t>(2 * vocab));
  int32_t want_id = -1;
  ASSERT_TRUE(e->prefill(alone, make_view(want.data(), DType::kF32, {vocab}), &want_id).ok());
  int32_t next = -1;
  ASSERT_TRUE(e->prefill(other, TensorView(), &next).ok());
  std::vector<int32_t> sampled;
  for (int64_t begin = 0; begin < 45; begin += 16) {
    const int64_t n = std::min<int64_t>(16, 45 - begin);
    const bool last = begin + n == 45;
    const std::vector<StepChunk> chunks = {StepChunk{chunked, begin, n, last, false}};
    const TensorView logits = last ? make_view(got.data(), DType::kF32, {2, vocab}) : TensorView();
    ASSERT_TRUE(e->step({other}, {next}, chunks, logits, &sampled).ok());
    ASSERT_EQ(sampled.size(), last ? 2u : 1u);
    next = sampled[0];
    EXPECT_EQ(e->length(chunked), begin + n);
    if (last) {
      EXPECT_EQ(sampled[1], want_id);
    }
  }
  EXPECT_EQ(rows(got, 1, vocab), want);
}

// Correction (reference/TIDALDECODE.md §2) fused with the sequence's own decode token.
TEST(MixedStep, CorrectionBesideItsDecodeEqualsCorrectThenDecode) {
  auto e = engine4();
  const int64_t vocab = e->model_config().vocab;
  SeqId a, b;
  ASSERT_TRUE(e->add_sequence(prompt(30, 6), tidal_options(4, 2), &a).ok());
  ASSERT_TRUE(e->add_sequence(prompt(30, 6), tidal_options(4, 2), &b).ok());
  int32_t ta = -1, tb = -1;
  ASSERT_TRUE(e->prefill(a, TensorView(), &ta).ok());
  ASSERT_TRUE(e->prefill(b, TensorView(), &tb).ok());
  std::vector<int32_t> s;
  for (int i = 0; i < 6; ++i) {  // sparse decode steps pollute the K/V of 6 positions
    ASSERT_TRUE(e->decode({a, b}, {ta, tb}, TensorView(), &s).ok());
    ta = s[0];
    tb = s[1];
  }
  ASSERT_EQ(ta, tb);
  std::vector<float> want(static_cast<size_t>(vocab)), got(static_cast<size_t>(vocab));
  ASSERT_TRUE(e->correct(a, 6).ok());
  std::vector<int32_t> wa, gb;
  ASSERT_TRUE(e->decode({a}, {ta}, make_view(want.data(), DType::kF32, {1, vocab}), &wa).ok());
  const std::vector<StepChunk> chunks = {StepChunk{b, 30, 6, false, true}};
  ASSERT_TRUE(e->step({b}, {tb}, chunks, make_view(got.data(), DType::kF32, {1, vocab}), &gb).ok());
  EXPECT_EQ(gb, wa);
  EXPECT_EQ(got, want);
  for (int64_t pos = 30; pos < 37; ++pos) {
    std::vector<float> k0, v0, k1, v1;
    ASSERT_TRUE(e->read_kv(a, 2, pos, &k0, &v0).ok());
    ASSERT_TRUE(e->read_kv(b, 2, pos, &k1, &v1).ok());
    EXPECT_EQ(k0, k1) << pos;
    EXPECT_EQ(v0, v1) << pos;
  }
  EXPECT_EQ(e->stats(b).correction_passes, 1);
  EXPECT_EQ(e->stats(b).correction_tokens, 6);
  EXPECT_EQ(e->stats(a).correction_tokens, e->stats(b).correction_tokens);
}

TEST(MixedStep, BadStepsChangeNothing) {
  auto e = engine4(/*prefill_chunk=*/16);
  SeqId a, b;
  ASSERT_TRUE(e->add_sequence(prompt(20, 7), SequenceOptions(), &a).ok());
  ASSERT_TRUE(e->add_sequence(prompt(10, 8), SequenceOptions(), &b).ok());
  int32_t t = -1;
  ASSERT_TRUE(e->prefill(a, TensorView(), &t).ok());
  const int64_t before = e->kv_tokens_in_use();
  std::vector<int32_t> s;
  auto fails = [&](const std::vector<SeqId>& ids, const std::vector<int32_t>& toks,
                   const std::vector<StepChunk>& chunks, const char* what) {
    const Status st = e->step(ids, toks, chunks, TensorView(), &s);
    EXPECT_FALSE(st.ok()) << what;
    EXPECT_NE(st.message().find(what), std::string::npos) << st.message();
    EXPECT_EQ(e->length(a), 20);
    EXPECT_EQ(e->length(b), 0);
    EXPECT_EQ(e->kv_tokens_in_use(), before);
  };
  fails({}, {}, {StepChunk{b, 3, 4, false, false}}, "neither its next prompt tokens nor cached");
  fails({}, {}, {StepChunk{b, 0, 11, false, false}}, "neither its next prompt tokens nor cached");
  fails({}, {}, {StepChunk{b, 0, 4, true, false}}, "samples only at the end");
  fails({b}, {3}, {}, "must be prefilled before decoding");
  fails({a}, {t}, {StepChunk{a, 20, 1, false, false}}, "neither its next prompt tokens");
  fails({}, {}, {StepChunk{b, 0, 4, false, false}, StepChunk{b, 4, 4, false, false}},
        "two chunks in one step");
  fails({}, {}, {StepChunk{b, 0, 10, false, false}, StepChunk{a, 0, 20, false, false}},
        "exceeds the step capacity");
  fails({}, {}, {}, "nothing to run");
}

// A chunk whose begin + count overflows int64 is refused like any chunk past the cached or
// prompt positions (beside a decode token, whose row would otherwise wrap the capacity check
// too), and the engine serves the next step as before.
TEST(MixedStep, HugeChunkCountsAreRefused) {
  auto e = engine4(/*prefill_chunk=*/16);
  SeqId a, b;
  ASSERT_TRUE(e->add_sequence(prompt(20, 7), SequenceOptions(), &a).ok());
  ASSERT_TRUE(e->add_sequence(prompt(10, 8), SequenceOptions(), &b).ok());
  int32_t t = -1;
  ASSERT_TRUE(e->prefill(a, TensorView(), &t).ok());
  std::vector<int32_t> s;
  ASSERT_TRUE(e->step({}, {}, {StepChunk{b, 0, 4, false, false}}, TensorView(), &s).ok());
  const int64_t before = e->kv_tokens_in_use();
  for (const StepChunk& c : {StepChunk{a, 1, INT64_MAX, false, false},   // correction
                             StepChunk{b, 4, INT64_MAX, false, false}}) {  // prefill
    const Status st = e->step({a}, {t}, {c}, TensorView(), &s);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.to_string();
    EXPECT_NE(st.message().find("neither its next prompt tokens nor cached"), std::string::npos)
        << st.message();
    EXPECT_EQ(e->length(a), 20);
    EXPECT_EQ(e->length(b), 4);
    EXPECT_EQ(e->kv_tokens_in_use(), before);
  }
  ASSERT_TRUE(e->step({a}, {t}, {StepChunk{b, 4, 6, false, false}}, TensorView(), &s).ok());
  EXPECT_EQ(e->length(a), 21);
  EXPECT_EQ(e->length(b), 10);
  e->release(a);
  e->release(b);
  EXPECT_EQ(e->kv_tokens_in_use(), 0);
}

// The CPU engine runs no graph: there is no step to replay (Engine::replay_last_step).
TEST(MixedStep, NoGraphStepToReplayOnTheCpu) {
  auto e = engine4();
  ASSERT_NE(e, nullptr);
  SeqId id;
  ASSERT_TRUE(e->add_sequence(prompt(12, 1), tidal_options(8, 3), &id).ok());
  int32_t token = -1;
  ASSERT_TRUE(e->prefill(id, TensorView(), &token).ok());
  std::vector<int32_t> sampled;
  ASSERT_TRUE(e->decode({id}, {token}, TensorView(), &sampled).ok());
  const int64_t before = e->length(id);
  EXPECT_EQ(e->replay_last_step(2).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e->length(id), before);
}

// Replays are bounded (a huge count queued that many graph launches: a GPU busy for hours) and
// a count outside [0, kMaxGraphReplays] is refused first, whatever the last step ran.
TEST(MixedStep, ReplayCountsAreBounded) {
  auto e = engine4();
  ASSERT_NE(e, nullptr);
  for (const int64_t times : {kMaxGraphReplays + 1, int64_t{-1}}) {
    const Status st = e->replay_last_step(times);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << times;
    EXPECT_NE(st.message().find("times " + std::to_string(times) + " is out of range [0, " +
                                std::to_string(kMaxGraphReplays) + "]"),
              std::string::npos)
        << st.message();
  }
}

}  // namespace
}  // namespace tidal::engine
