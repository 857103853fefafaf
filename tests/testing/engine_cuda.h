// SPDX-License-Identifier: Apache-2.0
// Helpers for the GPU engine tests (tests/engine/*_cuda_test.cc): random-weight models built on
// the host (so the CPU and GPU engines hold the same numbers, and tests can sharpen attention),
// copied to any device in any dtype; engines on the GPU; policies; lock-step decoding that records
// every step's logits. Greedy runs through generate() and prefix agreement: generation.h.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/weights.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/generate.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/generation.h"
#include "tests/testing/model_config.h"
#include "tests/testing/testing.h"

// Development aid: compiled with -DTIDAL_ENGINE_CUDA_TESTS_ON_CPU the suite runs on the CPU
// reference engine instead, which checks the tests' own logic on a machine without a GPU (the
// GPU-only facts, graphs and device memory, then fail). Never set in a real build.
#ifdef TIDAL_ENGINE_CUDA_TESTS_ON_CPU
#undef TIDAL_SKIP_WITHOUT_CUDA
#define TIDAL_SKIP_WITHOUT_CUDA() \
  do {                            \
  } while (0)
#endif

namespace tidal::testing {

inline Device gpu() {
#ifdef TIDAL_ENGINE_CUDA_TESTS_ON_CPU
  return Device{};
#else
  return Device{DeviceKind::kCuda, 0};
#endif
}

// An engine config on the GPU in `dtype`; everything else at its default.
inline engine::EngineConfig gpu_config(DType dtype, bool cuda_graphs = true) {
  engine::EngineConfig c;
  c.device = gpu();
  c.dtype = dtype;
  c.cuda_graphs = cuda_graphs;
  return c;
}

// A tiny Llama (tests/testing/model_config.h) with its own LM head: with tied embeddings a
// random model's greedy run just repeats its last token, whatever the attention did.
inline model::ModelConfig untied_llama(const TinyLlama& t) {
  model::ModelConfig c = tiny_llama(t);
  c.tie_word_embeddings = false;
  return c;
}

// How host_weights reshapes the random init so that greedy runs depend on the context.
struct WeightShaping {
  // q and k projections scaled so the attention logits q.k / sqrt(head_dim) have a standard
  // deviation near 8 (it is hidden * stddev^2 for unit-RMS inputs), as a trained model's peaky
  // attention, so sparse and dense attention really differ.
  bool sharpen_attention = true;
  // The embedding scaled so the current token weighs about as much in the residual stream as
  // the attention outputs (at 1 the context average dominates and greedy runs settle early).
  float embed_gain = 3.0f;
  // The final norm scaled: logits scale by it (a sharper distribution, for sampling tests).
  float logit_gain = 1.0f;
};

// f32 random weights on the host (model::init_random_llama_weights), reshaped.
inline model::LlamaWeights host_weights(const model::ModelConfig& c, uint64_t seed,
                                        const WeightShaping& shaping = WeightShaping()) {
  model::LlamaWeights w;
  const Status st = model::init_random_llama_weights(c, seed, &w);
  EXPECT_TRUE(st.ok()) << st.to_string();
  if (!st.ok()) return w;
  auto scale = [](TensorView t, float s) {
    for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] *= s;
  };
  if (shaping.sharpen_attention) {
    const float s = std::sqrt(8.0f / float(c.hidden)) / 0.02f;
    for (const model::LayerWeights& l : w.layers) {
      scale(l.wq, s);
      scale(l.wk, s);
    }
  }
  // Tied, the embedding is the LM head too: scaling it would scale the logits as well.
  if (shaping.embed_gain != 1.0f) scale(w.embed, shaping.embed_gain);
  if (shaping.logit_gain != 1.0f) scale(w.final_norm, shaping.logit_gain);
  return w;
}

// A copy of f32 host weights on `placement` (converted to its dtype), tensor by tensor.
inline Status upload_weights(const model::ModelConfig& c, const model::LlamaWeights& host,
                             const model::WeightPlacement& placement, model::LlamaWeights* out) {
  // The random init allocates the arena and carves every view; the copies overwrite the values.
  TIDAL_RETURN_IF_ERROR(model::init_random_llama_weights(c, 0, out, placement));
  std::vector<std::pair<TensorView, TensorView>> pairs = {{out->embed, host.embed},
                                                          {out->final_norm, host.final_norm}};
  if (!c.tie_word_embeddings) pairs.emplace_back(out->lm_head, host.lm_head);
  for (size_t i = 0; i < host.layers.size(); ++i) {
    const model::LayerWeights &d = out->layers[i], &h = host.layers[i];
    pairs.insert(pairs.end(), {{d.input_norm, h.input_norm}, {d.wq, h.wq}, {d.wk, h.wk},
                               {d.wv, h.wv}, {d.wo, h.wo}, {d.post_norm, h.post_norm},
                               {d.w_gate_up, h.w_gate_up}, {d.w_down, h.w_down}});
  }
  for (const auto& [dst, src] : pairs) {
    const HostTensor converted = convert(src, placement.dtype);
    copy_view(dst, converted.view(), Stream{});
    stream_synchronize(Stream{});  // `converted` dies at the end of the iteration
  }
  return ok_status();
}

// An engine holding a copy of `host` on config.device in config.dtype (null on failure, which
// fails the test).
inline std::unique_ptr<engine::Engine> make_engine(const model::ModelConfig& c,
                                                   const model::LlamaWeights& host,
                                                   const engine::EngineConfig& config) {
  model::LlamaWeights w;
  model::WeightPlacement placement;
  placement.dtype = config.dtype;
  placement.device = config.device;
  Status st = upload_weights(c, host, placement, &w);
  EXPECT_TRUE(st.ok()) << st.to_string();
  if (!st.ok()) return nullptr;
  std::unique_ptr<engine::Engine> e;
  st = engine::Engine::create(c, std::move(w), config, &e);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return e;
}

inline model::AttentionPolicy tidal_policy(int64_t budget, model::Granularity g,
                                           std::vector<int64_t> reselect) {
  model::AttentionPolicy p;
  p.kind = model::AttentionKind::kTidal;
  p.tidal.budget = budget;
  p.tidal.granularity = g;
  p.tidal.reselect_layers = std::move(reselect);
  return p;
}

inline model::AttentionPolicy quest_policy(int64_t budget, int64_t page_size) {
  model::AttentionPolicy p;
  p.kind = model::AttentionKind::kQuest;
  p.quest.budget = budget;
  p.quest.page_size = page_size;
  return p;
}

// "tidal per-kv-head K=8 reselect {4}", for failure messages.
inline std::string policy_name(const model::AttentionPolicy& p) {
  std::string s = model::attention_kind_name(p.kind);
  if (p.kind == model::AttentionKind::kTidal) {
    s += std::string(" ") + model::granularity_name(p.tidal.granularity) +
         " K=" + std::to_string(p.tidal.budget) + " reselect {";
    for (int64_t l : p.tidal.reselect_layers.value_or(std::vector<int64_t>{})) {
      s += (s.back() == '{' ? "" : ",") + std::to_string(l);
    }
    s += "}";
  } else if (p.kind == model::AttentionKind::kQuest) {
    s += " K=" + std::to_string(p.quest.budget) + " page " + std::to_string(p.quest.page_size);
  }
  return s;
}

inline int32_t argmax_of(const std::vector<float>& row) {
  return int32_t(std::max_element(row.begin(), row.end()) - row.begin());
}

// Top logit minus the runner-up: how decisive a greedy pick was (for failure messages).
inline float top2_margin(std::vector<float> row) {
  std::partial_sort(row.begin(), row.begin() + 2, row.end(), std::greater<float>());
  return row[0] - row[1];
}

// What one sequence did in a lock-step run.
struct SequenceRun {
  std::vector<int32_t> tokens;             // the greedy token after the prompt, then one per step
  std::vector<std::vector<float>> logits;  // [steps + 1][vocab]: after the prompt, then each step
  model::AttentionStats stats;
};

// Adds every prompt (with its policy, greedy sampling), prefills each, then decodes all of them
// together in one decode() call per step, `steps` times, feeding each sequence the token the
// engine sampled for it. Checks every sampled id is the host argmax of its logits row (the
// device's greedy pick). Releases the sequences at the end.
inline std::vector<SequenceRun> run_lockstep(engine::Engine& e,
                                             const std::vector<std::vector<int32_t>>& prompts,
                                             const std::vector<model::AttentionPolicy>& policies,
                                             int64_t steps) {
  const int64_t vocab = e.model_config().vocab;
  const size_t n = prompts.size();
  std::vector<SequenceRun> runs(n);
  std::vector<engine::SeqId> ids(n);
  for (size_t i = 0; i < n; ++i) {
    engine::SequenceOptions options;
    options.attention = policies[i];
    options.sampling.temperature = 0;
    Status st = e.add_sequence(prompts[i], options, &ids[i]);
    EXPECT_TRUE(st.ok()) << st.to_string();
    if (!st.ok()) return {};
    std::vector<float> logits(static_cast<size_t>(vocab));
    int32_t first = -1;
    st = e.prefill(ids[i], make_view(logits.data(), DType::kF32, {vocab}), &first);
    EXPECT_TRUE(st.ok()) << st.to_string();
    if (!st.ok()) return {};
    EXPECT_EQ(first, argmax_of(logits)) << "sequence " << i << " after its prompt";
    runs[i].tokens.push_back(first);
    runs[i].logits.push_back(std::move(logits));
  }
  std::vector<float> logits(n * size_t(vocab));
  std::vector<int32_t> feed(n), sampled;
  for (int64_t step = 0; step < steps; ++step) {
    for (size_t i = 0; i < n; ++i) feed[i] = runs[i].tokens.back();
    const Status st =
        e.decode(ids, feed, make_view(logits.data(), DType::kF32, {int64_t(n), vocab}), &sampled);
    EXPECT_TRUE(st.ok()) << st.to_string();
    if (!st.ok() || sampled.size() != n) return {};
    for (size_t i = 0; i < n; ++i) {
      std::vector<float> row(logits.begin() + long(i) * vocab,
                             logits.begin() + long(i + 1) * vocab);
      EXPECT_EQ(sampled[i], argmax_of(row)) << "sequence " << i << " step " << step;
      runs[i].tokens.push_back(sampled[i]);
      runs[i].logits.push_back(std::move(row));
    }
  }
  for (size_t i = 0; i < n; ++i) {
    runs[i].stats = e.stats(ids[i]);
    e.release(ids[i]);
  }
  return runs;
}

// Prefills `prompt` under `policy`, then feeds `forced` one token per step; returns the logits
// after the prompt and after each fed token. Releases the sequence unless `keep` is given.
inline std::vector<std::vector<float>> forced_logits(engine::Engine& e,
                                                     const std::vector<int32_t>& prompt,
                                                     const model::AttentionPolicy& policy,
                                                     const std::vector<int32_t>& forced,
                                                     engine::SeqId* keep = nullptr) {
  const int64_t vocab = e.model_config().vocab;
  engine::SeqId id;
  Status st = e.add_sequence(prompt, policy, &id);
  EXPECT_TRUE(st.ok()) << st.to_string();
  if (!st.ok()) return {};
  std::vector<std::vector<float>> out(1, std::vector<float>(static_cast<size_t>(vocab)));
  st = e.prefill(id, make_view(out[0].data(), DType::kF32, {vocab}));
  EXPECT_TRUE(st.ok()) << st.to_string();
  for (int32_t t : forced) {
    out.emplace_back(static_cast<size_t>(vocab));
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

// `n` token ids in [3, vocab) from a seeded generator (past BOS 1 and EOS 2), BOS first.
inline std::vector<int32_t> random_prompt(size_t n, int64_t vocab, uint32_t seed) {
  const std::vector<float> r = random_normal(n, seed);
  std::vector<int32_t> p(n);
  for (size_t i = 0; i < n; ++i) {
    const double u = 0.5 * (1.0 + std::erf(double(r[i]) / std::sqrt(2.0)));  // uniform (0, 1)
    p[i] = int32_t(3 + std::min<int64_t>(vocab - 4, int64_t(u * double(vocab - 3))));
  }
  if (n > 0) p[0] = 1;
  return p;
}

}  // namespace tidal::testing
