// SPDX-License-Identifier: Apache-2.0
// Which slice of each weight a tensor-parallel rank owns (DESIGN.md §6), as Megatron-LM and
// TensorRT-LLM split a Llama layer: column-parallel q/k/v and gate/up (each rank a block of heads
// or FFN columns, so attention and SwiGLU run locally), row-parallel o_proj and down_proj (each
// rank the matching input columns; one all-reduce after each), a vocabulary-parallel embedding and
// LM head. Pure arithmetic over sizes, so that model/ maps it onto HF tensor names ([out, in];
// hd = head_dim):
//   q_proj [num_heads * hd, hidden]         rows [q_heads.begin * hd, q_heads.end() * hd)
//   k_proj, v_proj [num_kv_heads * hd, ..]  rows of kv_heads, likewise
//   o_proj [hidden, num_heads * hd]         columns of q_heads
//   gate_proj, up_proj [inter, hidden]      rows [inter.begin, inter.end())
//   down_proj [hidden, inter]               columns of inter
//   embed_tokens, lm_head [vocab, hidden]   rows of vocab (all rows when not split)
#pragma once

#include <cstdint>
#include <string>

#include "runtime/status.h"

namespace tidal::parallel {

// A contiguous range [begin, begin + size).
struct Slice {
  int64_t begin = 0;
  int64_t size = 0;
  int64_t end() const { return begin + size; }
};

// Part `index` of `parts` equal parts of `n`. Requires: parts divides n, 0 <= index < parts.
inline Slice even_slice(int64_t n, int parts, int index) {
  const int64_t size = n / parts;
  return Slice{int64_t(index) * size, size};
}

// The attention heads of one TP rank. Query heads are split evenly. KV heads are split when
// tp_size divides num_kv_heads; when num_kv_heads divides tp_size instead (tp_size > num_kv_heads),
// each rank holds the one KV head its query heads read, replicated on kv_replicas ranks (the
// contiguous ranks whose query heads share it): then a list summed over a KV head's query heads
// spans those ranks.
struct HeadShard {
  Slice q_heads;
  Slice kv_heads;
  int kv_replicas = 1;  // ranks holding each of this rank's KV heads (1: split, no replication)
};

inline Status head_shard(int64_t num_heads, int64_t num_kv_heads, int tp_size, int tp_rank,
                         HeadShard* out) {
  const std::string what = std::to_string(num_heads) + " query heads and " +
                           std::to_string(num_kv_heads) + " KV heads over tp " +
                           std::to_string(tp_size);
  if (num_heads % tp_size != 0) {
    return invalid_argument("cannot split " + what + ": tp must divide the query heads");
  }
  HeadShard s;
  s.q_heads = even_slice(num_heads, tp_size, tp_rank);
  if (num_kv_heads % tp_size == 0) {
    s.kv_heads = even_slice(num_kv_heads, tp_size, tp_rank);
  } else if (tp_size % num_kv_heads == 0) {
    s.kv_replicas = tp_size / int(num_kv_heads);
    s.kv_heads = Slice{tp_rank / s.kv_replicas, 1};
  } else {
    return invalid_argument("cannot split " + what +
                            ": tp must divide the KV heads, or the KV heads divide tp");
  }
  *out = s;
  return ok_status();
}

// FFN columns of one TP rank. Errors: tp does not divide inter.
inline Status inter_shard(int64_t inter, int tp_size, int tp_rank, Slice* out) {
  if (inter % tp_size != 0) {
    return invalid_argument("cannot split the FFN width " + std::to_string(inter) + " over tp " +
                            std::to_string(tp_size) + ": tp must divide it");
  }
  *out = even_slice(inter, tp_size, tp_rank);
  return ok_status();
}

// Vocabulary rows of one TP rank: an even split when tp divides vocab, else every row (the
// embedding and LM head replicated, and no collective for them).
inline Slice vocab_shard(int64_t vocab, int tp_size, int tp_rank) {
  if (vocab % tp_size != 0) return Slice{0, vocab};
  return even_slice(vocab, tp_size, tp_rank);
}

}  // namespace tidal::parallel
