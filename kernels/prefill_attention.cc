// SPDX-License-Identifier: Apache-2.0
#include "kernels/prefill_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/paged_kv_common.h"
#include "runtime/tensor_access.h"
#include "runtime/thread_pool.h"

namespace tidal::kernels {

namespace {

// Checks the sequences' query rows against their contexts; returns the (row, head) items.
int64_t prefill_items(const PrefillAttentionParams& p) {
  const int32_t* starts = p.query_starts.data_as<int32_t>();
  const int64_t seqs = p.query_starts.size(0) - 1;
  for (int64_t i = 0; i < seqs; ++i) {
    const int64_t context = p.context_lens.data_as<int32_t>()[i];
    TIDAL_CHECK(starts[0] == 0 && starts[i] <= starts[i + 1] && starts[i + 1] <= p.q.size(0) &&
                    starts[i + 1] - starts[i] <= context &&
                    starts[i + 1] - starts[i] <= p.max_query_len,
                "prefill_attention: query_starts, context_lens or max_query_len inconsistent");
  }
  return int64_t(starts[seqs]) * p.q.size(1);
}

// Items [begin, end) of the step, item = query row * num_heads + head, straight from the
// definition in double: ref::prefill_attention runs every item on one thread, the CPU path
// splits them over threads.
void prefill_attention_items(const PrefillAttentionParams& p, int64_t begin, int64_t end) {
  const PagedKv kv{p.k_cache, p.v_cache, p.block_tables, p.k_scale, p.v_scale};
  const int64_t num_heads = p.q.size(1), head_dim = p.q.size(2);
  const int64_t group = num_heads / p.k_cache.size(2);
  const double scale = p.scale > 0 ? p.scale : 1.0 / std::sqrt(double(head_dim));
  const int32_t* starts = p.query_starts.data_as<int32_t>();
  std::vector<double> q(static_cast<size_t>(head_dim)), scores, acc(static_cast<size_t>(head_dim));
  std::vector<float> row(static_cast<size_t>(head_dim));
  int64_t i = 0;  // the sequence of the row; rows are grouped by sequence in order
  for (int64_t item = begin; item < end; ++item) {
    const int64_t r = item / num_heads, h = item % num_heads, kvh = h / group;
    while (starts[i + 1] <= r) ++i;
    const int32_t seq = p.seq_ids.data_as<int32_t>()[i];
    const int64_t context = p.context_lens.data_as<int32_t>()[i];
    const int64_t n = context - (starts[i + 1] - r) + 1;  // keys 0..position
    for (int64_t d = 0; d < head_dim; ++d) q[size_t(d)] = get_f32(p.q, r, h, d);
    scores.assign(size_t(n), 0.0);
    double max_score = -INFINITY;
    for (int64_t j = 0; j < n; ++j) {
      const PagedSlot s = kv.slot(seq, j);
      const float* k = kv.k_row(s, kvh, row.data());
      double dot = 0.0;
      for (int64_t d = 0; d < head_dim; ++d) dot += q[size_t(d)] * double(k[d]);
      scores[size_t(j)] = dot * scale;
      max_score = std::max(max_score, scores[size_t(j)]);
    }
    double denom = 0.0;
    for (double& s : scores) {
      s = std::exp(s - max_score);
      denom += s;
    }
    acc.assign(size_t(head_dim), 0.0);
    for (int64_t j = 0; j < n; ++j) {
      const PagedSlot s = kv.slot(seq, j);
      const float* v = kv.v_row(s, kvh, row.data());
      const double w = scores[size_t(j)] / denom;
      for (int64_t d = 0; d < head_dim; ++d) acc[size_t(d)] += w * double(v[d]);
    }
    for (int64_t d = 0; d < head_dim; ++d) set_f32(p.out, r, h, d, float(acc[size_t(d)]));
  }
}

}  // namespace

void prefill_attention(const PrefillAttentionParams& p, Stream stream) {
  const char* op = "prefill_attention";
  check_paged_kv(p.k_cache, p.v_cache, p.block_tables, op);
  TIDAL_CHECK(p.q.rank == 3 && same_shape(p.out, p.q) && p.q.size(2) == p.k_cache.size(3),
              "prefill_attention: q and out must be [num_tokens, num_heads, head_dim]");
  TIDAL_CHECK(p.q.size(1) % p.k_cache.size(2) == 0,
              "prefill_attention: num_heads must be a multiple of num_kv_heads");
  TIDAL_CHECK(p.out.dtype == p.q.dtype && p.q.is_contiguous() && p.out.is_contiguous(),
              "prefill_attention: q and out share a dtype and are contiguous");
  check_kv_format(p.k_cache, p.v_cache, p.k_scale, p.v_scale, p.q.dtype, op);
  TIDAL_CHECK(p.query_starts.rank == 1 && p.query_starts.size(0) >= 2,
              "prefill_attention: query_starts must be [num_seqs + 1]");
  const int64_t seqs = p.query_starts.size(0) - 1;
  check_per_token(p.query_starts, seqs + 1, DType::kI32, op, "query_starts");
  check_per_token(p.seq_ids, seqs, DType::kI32, op, "seq_ids");
  check_per_token(p.context_lens, seqs, DType::kI32, op, "context_lens");
  TIDAL_CHECK(p.max_query_len >= 1, "prefill_attention: max_query_len must be >= 1");
  if (on_cuda(op, {p.out, p.q, p.k_cache, p.v_cache, p.block_tables, p.query_starts, p.seq_ids,
                   p.context_lens})) {
    TIDAL_CUDA_CALL(op, cuda::prefill_attention(p, stream));
    return;
  }
  // The CPU path: (row, head) items over threads.
  parallel_for(prefill_items(p), 1,
               [&](int64_t begin, int64_t end) { prefill_attention_items(p, begin, end); });
}

void ref::prefill_attention(const PrefillAttentionParams& p) {
  prefill_attention_items(p, 0, prefill_items(p));
}

}  // namespace tidal::kernels
