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

// The sharding tests' model: 3 layers, 4 query heads over 2 KV heads, FFN 12, a vocabulary of
// 10. Under tp 2 every part splits; under tp 4 the KV heads are replicated and so is the
// vocabulary (4 does not divide 10); pp 2 splits the layers 2 + 1.
inline model::ModelConfig sharding_llama(bool tied) {
  TinyLlama t;
  t.layers = 3;
  t.heads = 4;
  t.kv_heads = 2;
  t.head_dim = 4;
  t.vocab = 10;
  t.inter = 12;
  model::ModelConfig c = tiny_llama(t);
  c.tie_word_embeddings = tied;
  return c;
}

}  // namespace tidal::testing
