// SPDX-License-Identifier: Apache-2.0
#include "kernels/vocab_shard.h"

#include <cstring>

#include "kernels/dispatch.h"
#include "runtime/tensor_access.h"

namespace tidal::kernels {

void embedding_lookup_shard(TensorView out, TensorView table, TensorView ids, int64_t vocab_begin,
                            [[maybe_unused]] Stream stream) {
  const char* op = "embedding_lookup_shard";
  TIDAL_CHECK(out.rank == 2 && table.rank == 2 && out.size(1) == table.size(1),
              "embedding_lookup_shard: out [num_tokens, hidden], table [vocab_shard, hidden]");
  check_per_token(ids, out.size(0), DType::kI32, op, "ids");
  TIDAL_CHECK(out.dtype == table.dtype && out.is_contiguous() && table.stride[1] == 1,
              "embedding_lookup_shard: out and table must share a dtype, with dense rows");
  TIDAL_CHECK(vocab_begin >= 0, "embedding_lookup_shard: vocab_begin must be >= 0");
  if (on_cuda(op, {out, table, ids})) {
    TIDAL_CUDA_CALL(op, cuda::embedding_lookup_shard(out, table, ids, vocab_begin, stream));
    return;
  }
  ref::embedding_lookup_shard(out, table, ids, vocab_begin);
}

void argmax_shard(TensorView pairs, TensorView logits, int64_t vocab_begin,
                  [[maybe_unused]] Stream stream) {
  const char* op = "argmax_shard";
  TIDAL_CHECK(logits.rank == 2 && logits.dtype == DType::kF32 && logits.stride[1] == 1 &&
                  logits.size(1) >= 1,
              "argmax_shard: logits must be f32 [num_rows, vocab_shard >= 1] with dense rows");
  check_shape(pairs, {logits.size(0), 2}, DType::kI32, op, "pairs");
  TIDAL_CHECK(vocab_begin >= 0 && vocab_begin + logits.size(1) <= INT32_MAX,
              "argmax_shard: global ids must fit i32");
  if (on_cuda(op, {pairs, logits})) {
    TIDAL_CUDA_CALL(op, cuda::argmax_shard(pairs, logits, vocab_begin, stream));
    return;
  }
  ref::argmax_shard(pairs, logits, vocab_begin);
}

void argmax_merge(TensorView tokens, TensorView pairs, [[maybe_unused]] Stream stream) {
  const char* op = "argmax_merge";
  TIDAL_CHECK(pairs.rank == 3 && pairs.size(0) >= 1,
              "argmax_merge: pairs must be [num_ranks >= 1, num_rows, 2]");
  check_shape(pairs, {pairs.size(0), pairs.size(1), 2}, DType::kI32, op, "pairs");
  check_per_token(tokens, pairs.size(1), DType::kI32, op, "tokens");
  if (on_cuda(op, {tokens, pairs})) {
    TIDAL_CUDA_CALL(op, cuda::argmax_merge(tokens, pairs, stream));
    return;
  }
  ref::argmax_merge(tokens, pairs);
}

void ref::embedding_lookup_shard(TensorView out, TensorView table, TensorView ids,
                                 int64_t vocab_begin) {
  const int32_t* id = ids.data_as<int32_t>();
  for (int64_t t = 0; t < out.size(0); ++t) {
    const int64_t row = int64_t(id[t]) - vocab_begin;
    const bool mine = row >= 0 && row < table.size(0);
    for (int64_t i = 0; i < out.size(1); ++i) {
      set_f32(out, t, i, mine ? get_f32(table, row, i) : 0.0f);
    }
  }
}

void ref::argmax_shard(TensorView pairs, TensorView logits, int64_t vocab_begin) {
  for (int64_t r = 0; r < logits.size(0); ++r) {
    const float* x = logits.data_as<float>() + r * logits.stride[0];
    int64_t best = 0;
    for (int64_t j = 1; j < logits.size(1); ++j) {
      if (x[j] > x[best]) best = j;  // strictly greater: the first of equal maxima stays
    }
    int32_t* out = pairs.data_as<int32_t>() + 2 * r;
    std::memcpy(&out[0], &x[best], 4);
    out[1] = int32_t(vocab_begin + best);
  }
}

void ref::argmax_merge(TensorView tokens, TensorView pairs) {
  const int64_t ranks = pairs.size(0), rows = pairs.size(1);
  const int32_t* p = pairs.data_as<int32_t>();
  for (int64_t r = 0; r < rows; ++r) {
    float best = 0.0f;
    int32_t id = -1;
    for (int64_t k = 0; k < ranks; ++k) {
      const int32_t* pair = p + 2 * (k * rows + r);
      float v;
      std::memcpy(&v, &pair[0], 4);
      if (id < 0 || v > best || (v == best && pair[1] < id)) {
        best = v;
        id = pair[1];
      }
    }
    tokens.data_as<int32_t>()[r] = id;
  }
}

}  // namespace tidal::kernels
