// SPDX-License-Identifier: Apache-2.0
// Seeded fuzzing of config.json's numeric fields through everything that sizes memory from them:
// a small checkpoint is written once, then its config.json gets 1-3 numeric fields replaced by
// values over their whole range (0, negatives, 10^7..10^9 layers or heads or contexts, 2^31,
// 2^63, fractions, 1e308, ...). Each variant goes through the parser, the memory plan and its fit
// check, Engine::load and a short generation. Every outcome must be ok or one clear line; none
// may crash, exhaust memory or take long (the sanitizer build runs it under ASan and UBSan).
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "runtime/engine/generate.h"
#include "tests/testing/safetensors_writer.h"
#include "tests/testing/testing.h"

namespace tidal::engine {
namespace {

using json = nlohmann::json;

constexpr int kIterations = 1200;

// The checkpoint's shapes (a GQA Llama with llama3 RoPE scaling, untied LM head).
json base_config() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "vocab_size": 64, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 4,
    "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
    "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": [2, 3],
    "torch_dtype": "float32"})");
}

void write_checkpoint(const std::string& dir) {
  const json c = base_config();
  const int64_t v = c["vocab_size"], h = c["hidden_size"], inter = c["intermediate_size"];
  const int64_t heads = c["num_attention_heads"], kvh = c["num_key_value_heads"];
  const int64_t d = c["head_dim"], layers = c["num_hidden_layers"];
  std::vector<testing::TestTensor> t;
  uint32_t seed = 1;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool norm = false) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    std::vector<float> x = testing::random_normal(size_t(n), seed++, 0.1f);
    if (norm) x.assign(size_t(n), 1.0f);
    t.push_back({name, "F32", shape, testing::bytes_of(x)});
  };
  add("model.embed_tokens.weight", {v, h});
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "self_attn.q_proj.weight", {heads * d, h});
    add(p + "self_attn.k_proj.weight", {kvh * d, h});
    add(p + "self_attn.v_proj.weight", {kvh * d, h});
    add(p + "self_attn.o_proj.weight", {h, heads * d});
    add(p + "mlp.gate_proj.weight", {inter, h});
    add(p + "mlp.up_proj.weight", {inter, h});
    add(p + "mlp.down_proj.weight", {h, inter});
    add(p + "input_layernorm.weight", {h}, true);
    add(p + "post_attention_layernorm.weight", {h}, true);
  }
  add("model.norm.weight", {h}, true);
  add("lm_head.weight", {v, h});
  testing::write_file(dir + "/model.safetensors", testing::build_safetensors(t));
  testing::write_file(dir + "/config.json", c.dump(2));
}

// A value over the field's whole range, biased to the ones that broke things before (10^7 to
// 10^9) and to the edges of the integer types.
json random_number(std::mt19937_64& rng, const json& truth) {
  switch (rng() % 14) {
    case 0:
    case 10:
    case 11: return json(int64_t(std::pow(10.0, 7 + int(rng() % 3))) * int64_t(1 + rng() % 3));
    case 1: return json(int64_t(1) << (rng() % 63));
    case 2: return json(int64_t(rng() % 65));
    case 3: return json(-int64_t(rng() % 4) - 1);
    case 4: return json(int64_t(rng() >> 1));  // anywhere in [0, 2^63)
    case 5: {
      const json edges[] = {json(std::numeric_limits<int64_t>::max()),
                            json(std::numeric_limits<uint64_t>::max()),
                            json(std::numeric_limits<int64_t>::min()),
                            json(int64_t(INT32_MAX)),
                            json(int64_t(INT32_MAX) + 1),
                            json(uint64_t(1) << 32)};
      return edges[rng() % std::size(edges)];
    }
    case 6: return json(std::pow(10.0, double(int(rng() % 617) - 308)));  // 1e-308 .. 1e308
    case 7: return json(double(rng() % 1000) / 7.0);                      // fractions
    case 8: return json(0);
    case 9:
      if (truth.is_number_integer()) return json(truth.get<int64_t>() * int64_t(1 + rng() % 4));
      return truth;
    case 12: return json(int64_t(1) << (14 + rng() % 16));  // 16K .. 512M
    default:                                                // near the true value
      if (truth.is_number_integer()) return json(truth.get<int64_t>() + int64_t(rng() % 5) - 2);
      return json(truth.get<double>() * double(rng() % 5) / 2.0);
  }
}

// Every numeric leaf: top level, rope_scaling, and eos_token_id's entries.
std::vector<json::json_pointer> numeric_fields(const json& j) {
  std::vector<json::json_pointer> out;
  for (const auto& [key, value] : j.items()) {
    if (value.is_number()) out.emplace_back("/" + key);
  }
  for (const auto& [key, value] : j["rope_scaling"].items()) {
    if (value.is_number()) out.emplace_back("/rope_scaling/" + key);
  }
  for (size_t i = 0; i < j["eos_token_id"].size(); ++i) {
    out.emplace_back("/eos_token_id/" + std::to_string(i));
  }
  return out;
}

// Not ok is fine; a crash, a multi-line message or an empty one is not.
void expect_clean(const Status& st, const std::string& where, const json& config) {
  if (st.ok()) return;
  ASSERT_FALSE(st.message().empty()) << where << " for " << config.dump();
  ASSERT_EQ(st.message().find('\n'), std::string::npos) << where << ": " << st.message();
}

TEST(ConfigFuzz, NumericFieldsOverTheirWholeRange) {
  const std::string dir = testing::temp_dir("config_fuzz");
  write_checkpoint(dir);
  const json base = base_config();
  const std::vector<json::json_pointer> fields = numeric_fields(base);
  std::mt19937_64 rng(8);
  int parsed = 0, fit = 0, loaded = 0, generated = 0, large = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kIterations; ++i) {
    json j = base;
    const uint64_t r = rng() % 20;
    for (int e = r < 12 ? 1 : r < 17 ? 2 : 3; e > 0; --e) {
      const json::json_pointer& f = fields[rng() % fields.size()];
      j[f] = random_number(rng, base[f]);
    }
    testing::write_file(dir + "/config.json", j.dump());
    model::ModelConfig m;
    Status st = model::load_model_config(dir, &m);
    expect_clean(st, "parse", j);
    if (HasFatalFailure()) return;
    if (!st.ok()) continue;
    ++parsed;
    large += m.num_layers >= 100 || m.max_position_embeddings >= 10000000 || m.vocab >= 1000000 ||
             m.hidden >= 10000 || m.inter >= 100000 || m.num_heads >= 100;
    EngineConfig cfg;
    cfg.max_batch = 1 + int64_t(rng() % 2);
    if (rng() % 2 == 0) cfg.max_context = std::min<int64_t>(m.max_position_embeddings, 128);
    if (rng() % 3 == 0) {  // and a flag over its whole range
      int64_t* flags[] = {&cfg.page_size, &cfg.max_batch, &cfg.max_context, &cfg.kv_capacity,
                          &cfg.prefill_chunk};
      const json v = random_number(rng, json(16));
      if (v.is_number_integer()) *flags[rng() % std::size(flags)] = v.get<int64_t>();
    }
    st = check_fits(m, cfg);  // what `tidal info` and `tidal generate` check first
    expect_clean(st, "plan", j);
    if (HasFatalFailure()) return;
    if (!st.ok()) continue;
    ++fit;
    std::unique_ptr<Engine> e;
    st = Engine::load(dir, cfg, &e);
    expect_clean(st, "load", j);
    if (HasFatalFailure()) return;
    if (!st.ok()) continue;
    ++loaded;
    GenerationRequest req;
    req.prompt = {int32_t(rng() % 64), 5, 9};
    req.stop.max_new_tokens = 3;
    req.sampling.temperature = rng() % 2 == 0 ? 0.0f : 1.0f;
    std::vector<GenerationResult> results;
    st = generate(
        *e, {req}, nullptr, [](const GenerationEvent&) { return true; }, &results);
    expect_clean(st, "generate", j);
    if (HasFatalFailure()) return;
    generated += st.ok();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  RecordProperty("parsed", parsed);
  RecordProperty("generated", generated);
  // Every stage is reached often enough to mean something.
  EXPECT_GT(parsed, kIterations / 10);
  EXPECT_GT(large, 10);    // sizes in the millions reach the plan
  EXPECT_LT(fit, parsed);  // and some plans do not fit
  EXPECT_GT(loaded, kIterations / 20);
  EXPECT_GT(generated, kIterations / 20);
  std::printf(
      "config fuzz: %d variants, %d parsed (%d with a size in the millions or beyond), %d fit, "
      "%d loaded, %d generated, %.1f s\n",
      kIterations, parsed, large, fit, loaded, generated, seconds);
}

}  // namespace
}  // namespace tidal::engine
