// SPDX-License-Identifier: Apache-2.0
// ModelConfig: the shape and numerics of a Llama-family checkpoint, parsed from its config.json
// (as published on the Hub and as written by transformers 4.x and 5.x), or from a named preset
// for random-weight runs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/dtype.h"
#include "runtime/status.h"

namespace tidal::model {

enum class RopeType { kDefault, kLlama3 };

struct RopeConfig {
  RopeType type = RopeType::kDefault;  // Default: plain RoPE
  float theta = 10000.0f;              // base frequency; Default: 10000
  // llama3 scaling (Llama-3.1): frequencies below low_freq are divided by `factor`, above
  // high_freq kept, smooth in between. Ignored for kDefault.
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string name;    // preset name or the checkpoint directory; for messages only
  int64_t vocab = 0;   // vocabulary size
  int64_t hidden = 0;  // model width
  int64_t inter = 0;   // SwiGLU FFN width
  int64_t num_layers = 0;
  int64_t num_heads = 0;                // query heads
  int64_t num_kv_heads = 0;             // key/value heads (== num_heads for MHA); divides num_heads
  int64_t head_dim = 0;                 // Default: hidden / num_heads
  int64_t max_position_embeddings = 0;  // the model's context length, in tokens
  float rms_norm_eps = 1e-5f;
  RopeConfig rope;
  bool tie_word_embeddings = false;    // LM head shares the embedding matrix
  int32_t bos_token_id = -1;           // -1: none
  std::vector<int32_t> eos_token_ids;  // any of these ends generation; may be empty
  DType dtype = DType::kBF16;          // the checkpoint's stored dtype (torch_dtype / dtype)

  // Checks every field for consistency (positive sizes, head counts that divide, even
  // head_dim, known rope type). Errors name the field.
  Status validate() const;
  int64_t group_size() const { return num_heads / num_kv_heads; }
  int64_t q_dim() const { return num_heads * head_dim; }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }
  // Parameters of the checkpoint (embeddings, every layer, final norm, untied LM head).
  int64_t num_params() const;
};

// Parses the text of a config.json. Unknown keys are ignored; an unsupported model (not
// Llama, biased projections, a rope type other than default/llama3, a non-SiLU activation)
// is an error naming the key.
Status parse_model_config(const std::string& json_text, ModelConfig* out);
// Reads and parses <dir>/config.json.
Status load_model_config(const std::string& dir, ModelConfig* out);

// Presets for random-weight runs and benchmarks: "llama2-7b", "llama3-8b", "llama3.1-8b",
// "llama-64l" (a 64-layer Llama-3-shaped model).
Status model_config_preset(const std::string& name, ModelConfig* out);
std::vector<std::string> model_config_preset_names();
// "tiny": a Llama-3-shaped model (4 layers, hidden 256, 8 / 2 heads of 32, vocab 4096, context
// 4096) small enough for CPU smoke tests of the bench tools; not a user-facing preset.
ModelConfig tiny_smoke_config();

}  // namespace tidal::model
