// SPDX-License-Identifier: Apache-2.0
// Small Llama configurations for random-weight tests: hidden = heads * head_dim, RoPE theta
// 10000, tied embeddings, BOS 1 and EOS 2.
#pragma once

#include <cstdint>

#include "model/config.h"

namespace tidal::testing {

struct TinyLlama {
  int64_t layers = 2;
  int64_t heads = 4;
  int64_t kv_heads = 2;
  int64_t head_dim = 4;
  int64_t context = 64;
  int64_t vocab = 40;
  int64_t inter = 24;
};

inline model::ModelConfig tiny_llama(const TinyLlama& t) {
  model::ModelConfig c;
  c.name = "tiny";
  c.vocab = t.vocab;
  c.hidden = t.heads * t.head_dim;
  c.inter = t.inter;
  c.num_layers = t.layers;
  c.num_heads = t.heads;
  c.num_kv_heads = t.kv_heads;
  c.head_dim = t.head_dim;
  c.max_position_embeddings = t.context;
  c.rope.theta = 10000;
  c.tie_word_embeddings = true;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

}  // namespace tidal::testing
