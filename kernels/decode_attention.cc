// SPDX-License-Identifier: Apache-2.0
#include "kernels/decode_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cache_rows.h"
#include "kernels/dispatch.h"
#include "kernels/paged_kv_common.h"
#include "runtime/tensor_access.h"
#include "runtime/thread_pool.h"

namespace tidal::kernels {
namespace {

void check(const DecodeAttentionParams& p) {
  const char* op = "decode_attention";
  check_paged_kv(p.k_cache, p.v_cache, p.block_tables, op);
  TIDAL_CHECK(p.q.rank == 3 && same_shape(p.out, p.q) && p.q.size(2) == p.k_cache.size(3),
              "decode_attention: q and out must be [num_tokens, num_heads, head_dim]");
  TIDAL_CHECK(p.k_cache.size(2) >= 1 && p.q.size(1) % p.k_cache.size(2) == 0,
              "decode_attention: num_heads must be a multiple of num_kv_heads");
  TIDAL_CHECK(p.out.dtype == p.q.dtype && p.q.is_contiguous() && p.out.is_contiguous(),
              "decode_attention: q and out share a dtype and are contiguous");
  check_kv_format(p.k_cache, p.v_cache, p.k_scale, p.v_scale, p.q.dtype, op);
  const int64_t tokens = p.q.size(0);
  check_per_token(p.seq_ids, tokens, DType::kI32, op, "seq_ids");
  check_per_token(p.lengths, tokens, DType::kI32, op, "lengths");
  check_per_token(p.roles, tokens, DType::kU8, op, "roles");
  check_per_token(p.num_lists, tokens, DType::kI32, op, "num_lists");
  TIDAL_CHECK(p.indices.rank == 3 && p.indices.size(0) == tokens,
              "decode_attention: indices must be [num_tokens, max_lists, max_budget]");
  check_shape(p.indices, {tokens, p.indices.size(1), p.indices.size(2)}, DType::kI32, op,
              "indices");
  check_shape(p.counts, {tokens, p.indices.size(1)}, DType::kI32, op, "counts");
  if (p.logits.data != nullptr) {
    TIDAL_CHECK(p.logits.rank == 3 && p.logits.dtype == DType::kF32 && p.logits.is_contiguous() &&
                    p.logits.size(0) == tokens && p.logits.size(1) == p.q.size(1),
                "decode_attention: logits must be contiguous f32 [num_tokens, num_heads, max_len]");
  }
  if (p.logits16.data != nullptr) {
    TIDAL_CHECK(p.logits16.rank == 3 && p.logits16.dtype == DType::kF16 &&
                    p.logits16.is_contiguous() && p.logits16.size(0) == tokens &&
                    p.logits16.size(1) == p.q.size(1),
                "decode_attention: logits16 must be contiguous f16 [num_tokens, num_heads, max_len]");
    TIDAL_CHECK(p.logits.data == nullptr || p.logits.size(2) == p.logits16.size(2),
                "decode_attention: logits and logits16 must have the same max_len");
  }
  if (p.lse.data != nullptr) check_shape(p.lse, {tokens, p.q.size(1)}, DType::kF32, op, "lse");
  if (p.prior_lens.data != nullptr)
    check_per_token(p.prior_lens, tokens, DType::kI32, op, "prior_lens");
  TIDAL_CHECK(p.num_splits >= 0, "decode_attention: num_splits must be >= 0");
  if (p.rows.data != nullptr) {
    check_shape(p.rows, {tokens, p.indices.size(1), p.indices.size(2)}, DType::kI32, op, "rows");
    TIDAL_CHECK(cache_rows_fit(p.k_cache.size(0), p.k_cache.size(1)),
                "decode_attention: rows need a cache of fewer than 2^31 - 2 rows");
  }
}

// What the CUDA kernels support beyond the op's contract (checked before a GPU launch).
void check_cuda(const DecodeAttentionParams& p, const TensorView& workspace) {
  const int64_t head_dim = p.q.size(2);
  TIDAL_CHECK(
      head_dim == 8 || head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128,
      "decode_attention: the CUDA kernel supports head_dim 8, 16, 32, 64 and 128, got " +
          std::to_string(head_dim));
  // 16-byte vector loads of q, K and V rows (and stores of out): rows are head_dim * dtype
  // bytes, a multiple of 16 for every supported head_dim, so the bases must be aligned.
  for (const TensorView* v : {&p.q, &p.out, &p.k_cache, &p.v_cache}) {
    TIDAL_CHECK(reinterpret_cast<uintptr_t>(v->data) % 16 == 0,
                "decode_attention: q, out and the caches must be 16-byte aligned on the GPU");
  }
  TIDAL_CHECK(reinterpret_cast<uintptr_t>(workspace.data) % 16 == 0,
              "decode_attention: the workspace must be 16-byte aligned");
  TIDAL_CHECK(p.q.size(0) <= 65535 && p.q.size(1) <= 65535,
              "decode_attention: the CUDA grid takes at most 65535 tokens and heads");
  TIDAL_CHECK(p.num_splits <= 1024, "decode_attention: num_splits must be <= 1024");
  if (p.merge_counters.data != nullptr) {
    TIDAL_CHECK(p.merge_counters.dtype == DType::kI32 && p.merge_counters.is_contiguous() &&
                    p.merge_counters.numel() >= p.q.size(0) * p.q.size(1) &&
                    p.merge_counters.device.index == p.q.device.index,
                "decode_attention: merge_counters must be contiguous i32 of at least num_tokens * "
                "num_heads elements on q's device");
  }
  TIDAL_CHECK(p.k_cache.size(1) >= 1, "decode_attention: page_size must be >= 1");
  // Positions and list offsets are int32 in the kernels (with room for a tile past the end).
  TIDAL_CHECK(p.block_tables.size(1) * p.k_cache.size(1) < (int64_t(1) << 30) &&
                  p.indices.size(1) * p.indices.size(2) < (int64_t(1) << 30),
              "decode_attention: positions and list entries must stay below 2^30");
}

// Items [begin, end) of the batch, item = token * num_heads + head, straight from the
// definition in double: ref::decode_attention runs every item on one thread, the CPU path splits
// them over threads.
void decode_attention_items(const DecodeAttentionParams& p, int64_t begin, int64_t end) {
  const PagedKv kv{p.k_cache, p.v_cache, p.block_tables, p.k_scale, p.v_scale};
  const int64_t num_heads = p.q.size(1), head_dim = p.q.size(2);
  const int64_t group = num_heads / p.k_cache.size(2);
  const double scale = p.scale > 0 ? p.scale : 1.0 / std::sqrt(double(head_dim));
  std::vector<int64_t> positions;
  std::vector<double> q(static_cast<size_t>(head_dim)), scores, acc(static_cast<size_t>(head_dim));
  std::vector<float> row(static_cast<size_t>(head_dim));
  for (int64_t item = begin; item < end; ++item) {
    const int64_t t = item / num_heads, h = item % num_heads;
    const int32_t seq = p.seq_ids.data_as<int32_t>()[t];
    const int64_t n = p.lengths.data_as<int32_t>()[t];
    const auto role = TokenRole(p.roles.data_as<uint8_t>()[t]);
    TIDAL_CHECK(n >= 1, "decode_attention: lengths must be >= 1");
    if (p.prior_lens.data != nullptr) {
      const int32_t prior = p.prior_lens.data_as<int32_t>()[t];
      TIDAL_CHECK(prior >= 0 && prior <= n, "decode_attention: prior_lens must be in 0..lengths");
    }
    const bool selecting = is_selecting(role);
    // A selecting token's logits: f16 where its lists are a group's and logits16 is given.
    const TensorView& logits =
        selecting && p.logits16.data != nullptr &&
                has_group_lists(p.num_lists.data_as<int32_t>()[t], int32_t(num_heads))
            ? p.logits16
            : p.logits;
    if (selecting) {
      TIDAL_CHECK(logits.data != nullptr && n <= logits.size(2),
                  "decode_attention: a selecting token needs logits of max_len >= n");
    }
    const int64_t lists = is_dense_range(role) ? 0 : p.num_lists.data_as<int32_t>()[t];
    TIDAL_CHECK(lists == 0 || (lists <= p.indices.size(1) && num_heads % lists == 0),
                "decode_attention: num_lists must divide num_heads and fit max_lists");
    positions.clear();
    if (lists == 0) {
      for (int64_t j = 0; j < n; ++j) positions.push_back(j);
    } else {
      const int64_t l = h / (num_heads / lists);
      const int64_t count = p.counts.data_as<int32_t>()[t * p.indices.size(1) + l];
      TIDAL_CHECK(count >= 1 && count <= p.indices.size(2),
                  "decode_attention: list count outside 1..max_budget");
      const int32_t* list =
          p.indices.data_as<int32_t>() + (t * p.indices.size(1) + l) * p.indices.size(2);
      for (int64_t i = 0; i < count; ++i) {
        TIDAL_CHECK(list[i] >= 0 && list[i] < n, "decode_attention: list position outside 0..n-1");
        positions.push_back(list[i]);
      }
    }
    const int64_t kvh = h / group;
    for (int64_t d = 0; d < head_dim; ++d) q[size_t(d)] = get_f32(p.q, t, h, d);
    scores.assign(positions.size(), 0.0);
    double max_score = -INFINITY;
    for (size_t i = 0; i < positions.size(); ++i) {
      const PagedSlot s = kv.slot(seq, positions[i]);
      const float* k = kv.k_row(s, kvh, row.data());
      double dot = 0.0;
      for (int64_t d = 0; d < head_dim; ++d) dot += q[size_t(d)] * double(k[d]);
      scores[i] = dot * scale;
      if (selecting) set_f32(logits, t, h, positions[i], float(scores[i]));
      max_score = std::max(max_score, scores[i]);
    }
    double denom = 0.0;
    for (double& s : scores) {
      s = std::exp(s - max_score);
      denom += s;
    }
    acc.assign(size_t(head_dim), 0.0);
    for (size_t i = 0; i < positions.size(); ++i) {
      const PagedSlot s = kv.slot(seq, positions[i]);
      const float* v = kv.v_row(s, kvh, row.data());
      const double w = scores[i] / denom;
      for (int64_t d = 0; d < head_dim; ++d) acc[size_t(d)] += w * double(v[d]);
    }
    for (int64_t d = 0; d < head_dim; ++d) set_f32(p.out, t, h, d, float(acc[size_t(d)]));
    if (p.lse.data != nullptr) set_f32(p.lse, t, h, float(max_score + std::log(denom)));
  }
}

}  // namespace

size_t decode_attention_workspace_size(const DecodeAttentionParams& p) {
  if (p.q.device.kind != DeviceKind::kCuda) return 0;
#if TIDAL_WITH_CUDA
  return cuda::decode_attention_workspace_size(p);
#else
  no_cuda_build("decode_attention");
#endif
}

int decode_attention_cluster_size(const DecodeAttentionParams& p) {
  if (p.q.device.kind != DeviceKind::kCuda) return 0;
#if TIDAL_WITH_CUDA
  return cuda::decode_attention_cluster_size(p);
#else
  no_cuda_build("decode_attention");
#endif
}

void decode_attention(const DecodeAttentionParams& p, TensorView workspace,
                      [[maybe_unused]] Stream stream) {
  check(p);
  if (on_cuda("decode_attention", {p.out, p.q, p.k_cache, p.v_cache, p.block_tables, p.seq_ids,
                                   p.lengths, p.roles, p.indices, p.counts, p.num_lists, p.logits,
                                   p.logits16, p.lse, p.merge_counters, p.prior_lens, p.rows})) {
    TIDAL_CHECK(workspace.nbytes() >= decode_attention_workspace_size(p),
                "decode_attention: workspace too small");
    check_cuda(p, workspace);
    TIDAL_CUDA_CALL("decode_attention", cuda::decode_attention(p, workspace, stream));
    return;
  }
  // The CPU path: (token, head) items over threads.
  parallel_for(p.q.size(0) * p.q.size(1), 1,
               [&](int64_t begin, int64_t end) { decode_attention_items(p, begin, end); });
}

void ref::decode_attention(const DecodeAttentionParams& p) {
  decode_attention_items(p, 0, p.q.size(0) * p.q.size(1));
}

}  // namespace tidal::kernels
