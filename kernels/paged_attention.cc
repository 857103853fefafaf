// SPDX-License-Identifier: Apache-2.0
#include "kernels/paged_attention.h"

#include <cmath>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/paged_kv_common.h"
#include "runtime/tensor_access.h"

namespace tidal::kernels {

void paged_attention(const PagedAttentionParams& p) {
  check_paged_kv(p.k_cache, p.v_cache, p.block_tables, "paged_attention");
  TIDAL_CHECK(p.q.rank == 3 && same_shape(p.out, p.q) && p.q.size(2) == p.k_cache.size(3),
              "paged_attention: q and out must be [num_tokens, num_heads, head_dim]");
  TIDAL_CHECK(p.q.size(1) % p.k_cache.size(2) == 0,
              "paged_attention: num_heads must be a multiple of num_kv_heads");
  TIDAL_CHECK(p.seq_ids.rank == 1 && p.positions.rank == 1 && p.seq_ids.size(0) == p.q.size(0) &&
                  p.positions.size(0) == p.q.size(0) && p.seq_ids.dtype == DType::kI32 &&
                  p.positions.dtype == DType::kI32,
              "paged_attention: seq_ids and positions must be i32 [num_tokens]");
  if (p.logits.data != nullptr) {
    TIDAL_CHECK(p.logits.rank == 3 && p.logits.dtype == DType::kF32 &&
                    p.logits.size(0) == p.q.size(0) && p.logits.size(1) == p.q.size(1),
                "paged_attention: logits must be f32 [num_tokens, num_heads, max_len]");
    require_cpu("paged_attention", {p.logits});
  }
  require_cpu("paged_attention",
              {p.out, p.q, p.k_cache, p.v_cache, p.block_tables, p.seq_ids, p.positions});
  ref::paged_attention(p);
}

void ref::paged_attention(const PagedAttentionParams& p) {
  const PagedKv kv{p.k_cache, p.v_cache, p.block_tables};
  const int64_t num_heads = p.q.size(1), head_dim = p.q.size(2);
  const int64_t group = num_heads / p.k_cache.size(2);
  const double scale = p.scale > 0 ? p.scale : 1.0 / std::sqrt(double(head_dim));
  std::vector<double> scores;
  std::vector<double> acc(static_cast<size_t>(head_dim));
  for (int64_t t = 0; t < p.q.size(0); ++t) {
    const int32_t seq = p.seq_ids.data_as<int32_t>()[t * p.seq_ids.stride[0]];
    const int32_t pos = p.positions.data_as<int32_t>()[t * p.positions.stride[0]];
    const int64_t n = int64_t(pos) + 1;  // causal: keys 0..pos
    scores.assign(size_t(n), 0.0);
    for (int64_t h = 0; h < num_heads; ++h) {
      const int64_t kvh = h / group;
      double max_score = -INFINITY;
      for (int64_t j = 0; j < n; ++j) {
        const PagedSlot s = kv.slot(seq, j);
        double dot = 0.0;
        for (int64_t d = 0; d < head_dim; ++d) {
          dot += double(get_f32(p.q, t, h, d)) * get_f32(p.k_cache, s.page, s.offset, kvh, d);
        }
        scores[size_t(j)] = dot * scale;
        if (p.logits.data != nullptr) {
          TIDAL_CHECK(j < p.logits.size(2), "paged_attention: position beyond logits max_len");
          set_f32(p.logits, t, h, j, float(scores[size_t(j)]));
        }
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
        const double w = scores[size_t(j)] / denom;
        for (int64_t d = 0; d < head_dim; ++d) {
          acc[size_t(d)] += w * get_f32(p.v_cache, s.page, s.offset, kvh, d);
        }
      }
      for (int64_t d = 0; d < head_dim; ++d) set_f32(p.out, t, h, d, float(acc[size_t(d)]));
    }
  }
}

}  // namespace tidal::kernels
