// SPDX-License-Identifier: Apache-2.0
// ModelConfig: the real stories260K config.json, hand-written Hub / transformers 4 / transformers 5
// configs for Llama-2, Llama-3 and Llama-3.1, every rejected case (one line naming the key), and
// the presets with their parameter counts.
#include "model/config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "model/llama.h"
#include "tests/testing/testing.h"

namespace tidal::model {
namespace {

// Llama-2-7b-hf as on the Hub (MHA: no num_key_value_heads in older revisions; here explicit).
const char* kLlama2 = R"({
  "_name_or_path": "meta-llama/Llama-2-7b-hf",
  "architectures": ["LlamaForCausalLM"],
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 11008,
  "max_position_embeddings": 4096,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 32,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "tie_word_embeddings": false,
  "torch_dtype": "float16",
  "transformers_version": "4.31.0.dev0",
  "use_cache": true,
  "vocab_size": 32000
})";

const char* kLlama3 = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": 128001,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 8192,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.40.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

const char* kLlama31 = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009],
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

// transformers 5: rope_parameters holds rope_theta and the scaling; dtype replaces torch_dtype.
const char* kTransformers5 = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "bos_token_id": 128000,
  "dtype": "bfloat16",
  "eos_token_id": [128001, 128008, 128009],
  "head_dim": 64,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "intermediate_size": 8192,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 16,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_parameters": {
    "factor": 32.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_theta": 500000.0,
    "rope_type": "llama3"
  },
  "tie_word_embeddings": true,
  "transformers_version": "5.0.0",
  "vocab_size": 128256
})";

// Parses `text` expecting failure; returns the message.
std::string parse_error(const std::string& text) {
  ModelConfig c;
  const Status s = parse_model_config(text, &c);
  EXPECT_FALSE(s.ok()) << "parsed unexpectedly: " << text;
  EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.message();
  return s.message();
}

// `base` with `from` replaced by `to` (which must occur exactly once).
std::string edit(const std::string& base, const std::string& from, const std::string& to) {
  const size_t at = base.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at == std::string::npos) return base;
  EXPECT_EQ(base.find(from, at + 1), std::string::npos) << from;
  return base.substr(0, at) + to + base.substr(at + from.size());
}

TEST(ConfigParse, Stories260KFromDisk) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf/config.json");
  ModelConfig c;
  const std::string dir = testing::shared_path("models/stories260K/hf");
  ASSERT_TRUE(load_model_config(dir, &c).ok());
  EXPECT_EQ(c.name, dir);
  EXPECT_EQ(c.hidden, 64);
  EXPECT_EQ(c.inter, 172);
  EXPECT_EQ(c.num_layers, 5);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.group_size(), 2);
  EXPECT_EQ(c.vocab, 512);
  EXPECT_EQ(c.max_position_embeddings, 512);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>({2}));
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope.theta, 10000.0f);
  EXPECT_EQ(c.rope.type, RopeType::kDefault);
  EXPECT_EQ(c.dtype, DType::kF32);
  EXPECT_TRUE(c.validate().ok());
}

TEST(ConfigParse, MissingFileNamesPath) {
  ModelConfig c;
  const std::string dir = testing::temp_dir("config_missing");
  const Status s = load_model_config(dir, &c);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_NE(s.message().find(dir + "/config.json"), std::string::npos) << s.message();
}

TEST(ConfigParse, LoadErrorNamesFile) {
  const std::string dir = testing::temp_dir("config_bad");
  testing::write_file(dir + "/config.json",
                      edit(kLlama3, "\"num_key_value_heads\": 8", "\"num_key_value_heads\": 5"));
  ModelConfig c;
  const Status s = load_model_config(dir, &c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(dir + "/config.json"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("num_key_value_heads"), std::string::npos) << s.message();
}

TEST(ConfigParse, Llama2HubForm) {
  ModelConfig c;
  ASSERT_TRUE(parse_model_config(kLlama2, &c).ok());
  EXPECT_EQ(c.vocab, 32000);
  EXPECT_EQ(c.hidden, 4096);
  EXPECT_EQ(c.inter, 11008);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 32);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_EQ(c.rope.type, RopeType::kDefault);
  EXPECT_FLOAT_EQ(c.rope.theta, 10000.0f);  // absent: the default
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.dtype, DType::kF16);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>({2}));
  EXPECT_EQ(c.num_params(), 6738415616);
}

TEST(ConfigParse, Llama2WithoutKvHeadsIsMha) {
  ModelConfig c;
  ASSERT_TRUE(parse_model_config(edit(kLlama2, "\"num_key_value_heads\": 32,", ""), &c).ok());
  EXPECT_EQ(c.num_kv_heads, 32);
  EXPECT_EQ(c.group_size(), 1);
  ASSERT_TRUE(parse_model_config(
                  edit(kLlama2, "\"num_key_value_heads\": 32", "\"num_key_value_heads\": null"), &c)
                  .ok());
  EXPECT_EQ(c.num_kv_heads, 32);
}

TEST(ConfigParse, Llama3) {
  ModelConfig c;
  ASSERT_TRUE(parse_model_config(kLlama3, &c).ok());
  EXPECT_EQ(c.vocab, 128256);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.group_size(), 4);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.kv_dim(), 1024);
  EXPECT_EQ(c.rope.type, RopeType::kDefault);
  EXPECT_FLOAT_EQ(c.rope.theta, 500000.0f);
  EXPECT_EQ(c.dtype, DType::kBF16);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>({128001}));
  EXPECT_EQ(c.num_params(), 8030261248);
}

TEST(ConfigParse, Llama31RopeScaling) {
  ModelConfig c;
  ASSERT_TRUE(parse_model_config(kLlama31, &c).ok());
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_EQ(c.rope.type, RopeType::kLlama3);
  EXPECT_FLOAT_EQ(c.rope.theta, 500000.0f);
  EXPECT_FLOAT_EQ(c.rope.factor, 8.0f);
  EXPECT_FLOAT_EQ(c.rope.low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(c.rope.high_freq_factor, 4.0f);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>({128001, 128008, 128009}));
  EXPECT_EQ(c.num_params(), 8030261248);
}

TEST(ConfigParse, RopeScalingTypeKeyAndDefault) {
  ModelConfig c;
  // Older transformers wrote "type" instead of "rope_type".
  ASSERT_TRUE(
      parse_model_config(edit(kLlama31, "\"rope_type\": \"llama3\"", "\"type\": \"llama3\""), &c)
          .ok());
  EXPECT_EQ(c.rope.type, RopeType::kLlama3);
  ASSERT_TRUE(parse_model_config(edit(kLlama3, "\"rope_scaling\": null",
                                      "\"rope_scaling\": {\"rope_type\": \"default\"}"),
                                 &c)
                  .ok());
  EXPECT_EQ(c.rope.type, RopeType::kDefault);
  ASSERT_TRUE(parse_model_config(edit(kLlama3, "\"rope_scaling\": null,", ""), &c).ok());
  EXPECT_EQ(c.rope.type, RopeType::kDefault);
}

TEST(ConfigParse, Transformers5Form) {
  ModelConfig c;
  ASSERT_TRUE(parse_model_config(kTransformers5, &c).ok());
  EXPECT_EQ(c.hidden, 2048);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.num_layers, 16);
  EXPECT_EQ(c.rope.type, RopeType::kLlama3);
  EXPECT_FLOAT_EQ(c.rope.theta, 500000.0f);
  EXPECT_FLOAT_EQ(c.rope.factor, 32.0f);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 8192);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.dtype, DType::kBF16);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>({128001, 128008, 128009}));
  // rope_parameters with the default type and its own theta.
  const std::string plain = R"({"model_type": "llama", "vocab_size": 100, "hidden_size": 64,
      "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
      "max_position_embeddings": 256, "dtype": "float32", "eos_token_id": null,
      "rope_parameters": {"rope_theta": 12345.0, "rope_type": "default"}})";
  ASSERT_TRUE(parse_model_config(plain, &c).ok());
  EXPECT_EQ(c.rope.type, RopeType::kDefault);
  EXPECT_FLOAT_EQ(c.rope.theta, 12345.0f);
  EXPECT_EQ(c.dtype, DType::kF32);
  EXPECT_TRUE(c.eos_token_ids.empty());
  EXPECT_EQ(c.bos_token_id, -1);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-6f);  // transformers' LlamaConfig default
}

TEST(ConfigParse, ExplicitHeadDimDiffersFromHiddenOverHeads) {
  ModelConfig c;
  const std::string text =
      edit(kLlama3, "\"hidden_size\": 4096,", "\"hidden_size\": 4096, \"head_dim\": 256,");
  ASSERT_TRUE(parse_model_config(text, &c).ok());
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.q_dim(), 8192);
  EXPECT_EQ(c.kv_dim(), 2048);
  // Explicit head_dim: hidden need not divide by the heads.
  ASSERT_TRUE(
      parse_model_config(edit(text, "\"hidden_size\": 4096", "\"hidden_size\": 4100"), &c).ok());
  EXPECT_EQ(c.hidden, 4100);
}

TEST(ConfigParse, ArchitecturesWithoutModelType) {
  ModelConfig c;
  EXPECT_TRUE(parse_model_config(edit(kLlama3, "\"model_type\": \"llama\",", ""), &c).ok());
}

TEST(ConfigErrors, UnknownRopeTypeIsNamed) {
  for (const char* type : {"yarn", "dynamic", "linear", "longrope"}) {
    const std::string msg = parse_error(edit(kLlama31, "\"rope_type\": \"llama3\"",
                                             std::string("\"rope_type\": \"") + type + "\""));
    EXPECT_NE(msg.find(type), std::string::npos) << msg;
    EXPECT_NE(msg.find("rope_scaling"), std::string::npos) << msg;
  }
  const std::string msg =
      parse_error(edit(kTransformers5, "\"rope_type\": \"llama3\"", "\"rope_type\": \"yarn\""));
  EXPECT_NE(msg.find("yarn"), std::string::npos) << msg;
  EXPECT_NE(msg.find("rope_parameters"), std::string::npos) << msg;
}

TEST(ConfigErrors, Llama3ScalingNeedsItsFields) {
  const std::string msg = parse_error(edit(kLlama31, "\"low_freq_factor\": 1.0,", ""));
  EXPECT_NE(msg.find("low_freq_factor"), std::string::npos) << msg;
  const std::string msg2 =
      parse_error(edit(kLlama31, "\"high_freq_factor\": 4.0", "\"high_freq_factor\": 1.0"));
  EXPECT_NE(msg2.find("high_freq_factor"), std::string::npos) << msg2;
  const std::string msg3 = parse_error(edit(kLlama31, "\"rope_type\": \"llama3\"", "\"x\": 1"));
  EXPECT_NE(msg3.find("rope_type"), std::string::npos) << msg3;
}

TEST(ConfigErrors, InconsistentHeads) {
  std::string msg =
      parse_error(edit(kLlama3, "\"num_key_value_heads\": 8", "\"num_key_value_heads\": 5"));
  EXPECT_NE(msg.find("num_key_value_heads"), std::string::npos) << msg;
  EXPECT_NE(msg.find("num_attention_heads"), std::string::npos) << msg;
  msg = parse_error(edit(kLlama3, "\"num_attention_heads\": 32", "\"num_attention_heads\": 30"));
  EXPECT_NE(msg.find("hidden_size"), std::string::npos) << msg;
  EXPECT_NE(msg.find("num_attention_heads"), std::string::npos) << msg;
  msg = parse_error(
      edit(kLlama3, "\"hidden_size\": 4096,", "\"hidden_size\": 4096, \"head_dim\": 127,"));
  EXPECT_NE(msg.find("head_dim"), std::string::npos) << msg;
  msg = parse_error(edit(kLlama3, "\"num_attention_heads\": 32", "\"num_attention_heads\": 0"));
  EXPECT_NE(msg.find("num_attention_heads"), std::string::npos) << msg;
  msg = parse_error(edit(kLlama3, "\"num_key_value_heads\": 8", "\"num_key_value_heads\": -8"));
  EXPECT_NE(msg.find("num_key_value_heads"), std::string::npos) << msg;
  msg = parse_error(edit(kLlama3, "\"num_hidden_layers\": 32", "\"num_hidden_layers\": 0"));
  EXPECT_NE(msg.find("num_hidden_layers"), std::string::npos) << msg;
  msg = parse_error(edit(kLlama3, "\"vocab_size\": 128256", "\"vocab_size\": 1e300"));
  EXPECT_NE(msg.find("vocab_size"), std::string::npos) << msg;
}

TEST(ConfigErrors, UnsupportedModels) {
  std::string msg =
      parse_error(edit(kLlama3, "\"attention_bias\": false", "\"attention_bias\": true"));
  EXPECT_NE(msg.find("attention_bias"), std::string::npos) << msg;
  msg = parse_error(edit(kLlama31, "\"mlp_bias\": false", "\"mlp_bias\": true"));
  EXPECT_NE(msg.find("mlp_bias"), std::string::npos) << msg;
  msg = parse_error(edit(kLlama3, "\"model_type\": \"llama\"", "\"model_type\": \"mistral\""));
  EXPECT_NE(msg.find("model_type"), std::string::npos) << msg;
  EXPECT_NE(msg.find("mistral"), std::string::npos) << msg;
  msg = parse_error(
      edit(edit(kLlama3, "\"model_type\": \"llama\",", ""), "LlamaForCausalLM", "GPT2LMHeadModel"));
  EXPECT_NE(msg.find("model_type"), std::string::npos) << msg;
  msg = parse_error(edit(kLlama3, "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\""));
  EXPECT_NE(msg.find("hidden_act"), std::string::npos) << msg;
  msg = parse_error(edit(kLlama3, "\"torch_dtype\": \"bfloat16\"", "\"torch_dtype\": \"int8\""));
  EXPECT_NE(msg.find("torch_dtype"), std::string::npos) << msg;
}

TEST(ConfigErrors, WrongTypes) {
  const struct {
    const char* from;
    const char* to;
    const char* key;
  } cases[] = {
      {"\"hidden_size\": 4096", "\"hidden_size\": \"4096\"", "hidden_size"},
      {"\"hidden_size\": 4096", "\"hidden_size\": 4096.5", "hidden_size"},
      {"\"vocab_size\": 128256", "\"vocab_size\": [128256]", "vocab_size"},
      {"\"num_hidden_layers\": 32", "\"num_hidden_layers\": true", "num_hidden_layers"},
      {"\"num_key_value_heads\": 8", "\"num_key_value_heads\": {}", "num_key_value_heads"},
      {"\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": \"1e-5\"", "rms_norm_eps"},
      {"\"rope_theta\": 500000.0", "\"rope_theta\": [1]", "rope_theta"},
      {"\"rope_scaling\": null", "\"rope_scaling\": \"llama3\"", "rope_scaling"},
      {"\"tie_word_embeddings\": false", "\"tie_word_embeddings\": 0", "tie_word_embeddings"},
      {"\"torch_dtype\": \"bfloat16\"", "\"torch_dtype\": 16", "torch_dtype"},
      {"\"bos_token_id\": 128000", "\"bos_token_id\": \"<s>\"", "bos_token_id"},
      {"\"bos_token_id\": 128000", "\"bos_token_id\": -5", "bos_token_id"},
      {"\"eos_token_id\": 128001", "\"eos_token_id\": [128001, \"x\"]", "eos_token_id"},
      {"\"eos_token_id\": 128001", "\"eos_token_id\": 99999999999", "eos_token_id"},
      {"\"eos_token_id\": 128001", "\"eos_token_id\": 200000", "eos_token_id"},
      {"\"model_type\": \"llama\"", "\"model_type\": 7", "model_type"},
      {"\"attention_bias\": false", "\"attention_bias\": \"no\"", "attention_bias"},
      {"\"max_position_embeddings\": 8192", "\"max_position_embeddings\": null",
       "max_position_embeddings"},
      {"\"intermediate_size\": 14336,", "", "intermediate_size"},
      {"\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 0", "rms_norm_eps"},
      {"\"rope_theta\": 500000.0", "\"rope_theta\": 1e50", "rope_theta"},
  };
  for (const auto& c : cases) {
    const std::string msg = parse_error(edit(kLlama3, c.from, c.to));
    EXPECT_NE(msg.find(c.key), std::string::npos) << c.to << " -> " << msg;
  }
}

// Sizes beyond any published model are refused at parse time, naming the key, before anything is
// sized from them (10^8 layers once ended in std::bad_alloc in the memory plan, 10^7 in a minute
// and 24 GB of allocations).
TEST(ConfigErrors, SizesAreBoundedNamingTheKey) {
  const struct {
    const char* from;
    const char* key;
    const char* value;
  } cases[] = {
      {"\"num_hidden_layers\": 32", "num_hidden_layers", "100000000"},
      {"\"num_hidden_layers\": 32", "num_hidden_layers", "10000000"},
      {"\"num_hidden_layers\": 32", "num_hidden_layers", "30000000"},
      {"\"num_hidden_layers\": 32", "num_hidden_layers", "1025"},
      {"\"hidden_size\": 4096", "hidden_size", "1000000000"},
      {"\"intermediate_size\": 14336", "intermediate_size", "10000000"},
      {"\"vocab_size\": 128256", "vocab_size", "100000000"},
      {"\"num_key_value_heads\": 8", "num_key_value_heads", "1048576"},
      {"\"max_position_embeddings\": 8192", "max_position_embeddings", "1000000000"},
  };
  for (const auto& c : cases) {
    const std::string msg =
        parse_error(edit(kLlama3, c.from, "\"" + std::string(c.key) + "\": " + c.value));
    EXPECT_NE(msg.find(std::string(c.value) + " ('" + c.key + "') is out of range: at most"),
              std::string::npos)
        << msg;
  }
  // Sizes that shape the weights say what the weights alone would take.
  EXPECT_NE(parse_error(edit(kLlama3, "\"num_hidden_layers\": 32", "\"num_hidden_layers\": 100000000"))
                .find("; its weights alone would take ~4.36e+16 bytes (38.7 PiB in bf16)"),
            std::string::npos);
  // The largest allowed context parses (the engine's plan then decides what fits).
  ModelConfig c;
  EXPECT_TRUE(parse_model_config(edit(kLlama3, "\"max_position_embeddings\": 8192",
                                      "\"max_position_embeddings\": 268435456"),
                                 &c)
                  .ok());
}

// Float values were printed with %f: rms_norm_eps -1e-9 read "rms_norm_eps (-0.000000) must be
// positive", and a value below float's range (1e-50) became 0 before anyone looked at it. They
// are printed as written now, and a nonzero value that float cannot hold is refused by name.
TEST(ConfigErrors, FloatValuesAreNamedAsWritten) {
  const struct {
    const char* key;
    const char* from;
    const char* value;
  } cases[] = {
      {"rms_norm_eps", "\"rms_norm_eps\": 1e-05", "-1e-09"},
      {"rms_norm_eps", "\"rms_norm_eps\": 1e-05", "1e-50"},
      {"rms_norm_eps", "\"rms_norm_eps\": 1e-05", "1e-40"},
      {"rope_theta", "\"rope_theta\": 500000.0", "-5e-07"},
      {"rope_theta", "\"rope_theta\": 500000.0", "1e-300"},
      {"rope_theta", "\"rope_theta\": 500000.0", "1e-38"},  // subnormal in float
  };
  for (const auto& c : cases) {
    const std::string msg =
        parse_error(edit(kLlama3, c.from, "\"" + std::string(c.key) + "\": " + c.value));
    EXPECT_NE(msg.find(c.key), std::string::npos) << c.value << " -> " << msg;
    EXPECT_NE(msg.find(c.value), std::string::npos) << c.value << " -> " << msg;
  }
  // -0.0 is zero, not an underflow: the message is the positivity rule's.
  EXPECT_NE(parse_error(edit(kLlama3, "\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": -0.0"))
                .find("must be positive"),
            std::string::npos);
}

// rope_theta was only required positive: 1e-30 loaded, giving inverse frequencies of 3.4e29, and
// with 1e-35 the rotation angle at position 131071 overflowed to inf (so sin and cos were NaN);
// any base at or below 1 inverts RoPE's frequency ladder. It must exceed 1 now, named with its
// value.
TEST(ConfigErrors, RopeThetaMustExceedOne) {
  for (const char* value : {"1e-30", "1e-35", "0.5", "1", "0", "-10000"}) {
    const std::string msg = parse_error(
        edit(kLlama3, "\"rope_theta\": 500000.0", std::string("\"rope_theta\": ") + value));
    EXPECT_NE(msg.find(std::string("rope_theta ") + value), std::string::npos) << msg;
    EXPECT_NE(msg.find("must be greater than 1"), std::string::npos) << msg;
  }
  // The same inside transformers 5's rope_parameters.
  const std::string msg =
      parse_error(edit(kTransformers5, "\"rope_theta\": 500000.0", "\"rope_theta\": 1e-30"));
  EXPECT_NE(msg.find("rope_theta 1e-30"), std::string::npos) << msg;
  // Just above 1 is allowed, and its angles stay finite to the end of the context.
  ModelConfig c;
  ASSERT_TRUE(
      parse_model_config(edit(kLlama3, "\"rope_theta\": 500000.0", "\"rope_theta\": 1.5"), &c)
          .ok());
  for (const float f : rope_inv_freq(c.rope, c.head_dim)) {
    EXPECT_TRUE(std::isfinite(f * float(c.max_position_embeddings - 1))) << f;
  }
  // What the bound prevents: with 1e-35 the top inverse frequency times 131071 is inf.
  RopeConfig tiny;
  tiny.theta = 1e-35f;
  EXPECT_FALSE(std::isfinite(rope_inv_freq(tiny, 128).back() * 131071.0f));
}

// llama3 scaling took any positive factor: 0.5 multiplied the low frequencies instead of dividing
// them (transformers requires factor >= 1), and 1e-30 made them ~1e30. Messages gave no values.
TEST(ConfigErrors, Llama3ScalingFactorsAreBounded) {
  const struct {
    const char* from;
    const char* to;
    const char* want;
  } cases[] = {
      {"\"factor\": 8.0", "\"factor\": 0.5", "factor 0.5 must be at least 1"},
      {"\"factor\": 8.0", "\"factor\": 1e-30", "factor 1e-30 must be at least 1"},
      {"\"factor\": 8.0", "\"factor\": 0", "factor 0 must be at least 1"},
      {"\"factor\": 8.0", "\"factor\": -8", "factor -8 must be at least 1"},
      {"\"low_freq_factor\": 1.0", "\"low_freq_factor\": 0", "low_freq_factor 0 must be positive"},
      {"\"low_freq_factor\": 1.0", "\"low_freq_factor\": -1",
       "low_freq_factor -1 must be positive"},
      {"\"high_freq_factor\": 4.0", "\"high_freq_factor\": 0.5",
       "high_freq_factor 0.5 must exceed low_freq_factor 1"},
      {"\"original_max_position_embeddings\": 8192", "\"original_max_position_embeddings\": 0",
       "original_max_position_embeddings 0"},
  };
  for (const auto& c : cases) {
    const std::string msg = parse_error(edit(kLlama31, c.from, c.to));
    EXPECT_NE(msg.find(c.want), std::string::npos) << c.to << " -> " << msg;
  }
  ModelConfig c;
  ASSERT_TRUE(parse_model_config(edit(kLlama31, "\"factor\": 8.0", "\"factor\": 1.0"), &c).ok());
  EXPECT_FLOAT_EQ(c.rope.factor, 1.0f);
}

TEST(ConfigErrors, NotJsonOrNotObject) {
  EXPECT_NE(parse_error("").find("JSON"), std::string::npos);
  EXPECT_NE(parse_error("{\"hidden_size\": 4096,").find("JSON"), std::string::npos);
  EXPECT_NE(parse_error("[1, 2]").find("object"), std::string::npos);
  EXPECT_NE(parse_error("{\n\"a\":\n\"\x01\"\n}").find("config.json"), std::string::npos);
}

TEST(ConfigPresets, ShapesAndParams) {
  ModelConfig c;
  ASSERT_TRUE(model_config_preset("llama2-7b", &c).ok());
  EXPECT_EQ(c.name, "llama2-7b");
  EXPECT_EQ(c.vocab, 32000);
  EXPECT_EQ(c.num_kv_heads, 32);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>({2}));
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.num_params(), 6738415616);

  ASSERT_TRUE(model_config_preset("llama3-8b", &c).ok());
  EXPECT_EQ(c.vocab, 128256);
  EXPECT_EQ(c.inter, 14336);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.max_position_embeddings, 8192);
  EXPECT_FLOAT_EQ(c.rope.theta, 500000.0f);
  EXPECT_EQ(c.rope.type, RopeType::kDefault);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids.front(), 128001);
  EXPECT_EQ(c.num_params(), 8030261248);

  ASSERT_TRUE(model_config_preset("llama3.1-8b", &c).ok());
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_EQ(c.rope.type, RopeType::kLlama3);
  EXPECT_FLOAT_EQ(c.rope.factor, 8.0f);
  EXPECT_FLOAT_EQ(c.rope.low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(c.rope.high_freq_factor, 4.0f);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>({128001, 128008, 128009}));
  EXPECT_EQ(c.num_params(), 8030261248);

  ASSERT_TRUE(model_config_preset("llama-64l", &c).ok());
  EXPECT_EQ(c.num_layers, 64);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_EQ(c.num_kv_heads, 8);
  // 8B minus the non-layer parts, doubled, plus them back.
  const int64_t outside = 2 * 128256 * 4096 + 4096;
  EXPECT_EQ(c.num_params(), 2 * (8030261248 - outside) + outside);
}

TEST(ConfigPresets, AllValidAndUnknownNamed) {
  for (const std::string& name : model_config_preset_names()) {
    ModelConfig c;
    ASSERT_TRUE(model_config_preset(name, &c).ok()) << name;
    EXPECT_TRUE(c.validate().ok()) << name;
  }
  ModelConfig c;
  const Status s = model_config_preset("llama9-1t", &c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("llama9-1t"), std::string::npos) << s.message();
}

TEST(ConfigValidate, NamesTheField) {
  ModelConfig c;
  ASSERT_TRUE(model_config_preset("llama3-8b", &c).ok());
  ModelConfig bad = c;
  bad.num_kv_heads = 0;
  EXPECT_NE(bad.validate().message().find("num_kv_heads"), std::string::npos);
  bad = c;
  bad.head_dim = 3;
  EXPECT_NE(bad.validate().message().find("head_dim"), std::string::npos);
  bad = c;
  bad.num_heads = 12;
  EXPECT_NE(bad.validate().message().find("num_heads"), std::string::npos);
  bad = c;
  bad.rms_norm_eps = 0.0f;
  EXPECT_NE(bad.validate().message().find("rms_norm_eps"), std::string::npos);
  bad = c;
  bad.rms_norm_eps = std::nanf("");
  EXPECT_NE(bad.validate().message().find("rms_norm_eps nan"), std::string::npos)
      << bad.validate().message();
  bad = c;
  bad.rope.theta = std::nanf("");
  EXPECT_NE(bad.validate().message().find("rope_theta nan"), std::string::npos)
      << bad.validate().message();
  bad = c;
  bad.rope.theta = 1e-30f;
  EXPECT_NE(bad.validate().message().find("rope_theta 1e-30"), std::string::npos)
      << bad.validate().message();
  bad = c;
  bad.max_position_embeddings = -1;
  EXPECT_NE(bad.validate().message().find("max_position_embeddings -1"), std::string::npos)
      << bad.validate().message();
  bad = c;
  bad.bos_token_id = 200000;
  EXPECT_NE(bad.validate().message().find("bos_token_id"), std::string::npos);
}

}  // namespace
}  // namespace tidal::model
