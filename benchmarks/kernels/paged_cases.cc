// SPDX-License-Identifier: Apache-2.0
// kernel_bench cases for the paged-KV ops: appending a step's K/V, and dense decode attention
// over 1K and 4K tokens of context (Llama-3 32/8 heads and Llama-2 MHA, head_dim 128). Pages are
// handed out in a scrambled order, so a kernel that ignores the block table gets caught.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "benchmarks/kernels/bench_case.h"
#include "kernels/paged_attention.h"
#include "kernels/paged_kv_append.h"
#include "runtime/tensor.h"

namespace tidal::bench {
namespace {

constexpr int64_t kPageSize = 16;
constexpr int64_t kHeadDim = 128;
constexpr double kF32 = sizeof(float);

// One sequence's KV for one layer: caches of `num_pages` pages and a block table that lists
// every page, in a fixed scrambled order.
struct PagedLayer {
  PagedLayer(int64_t num_pages, int64_t num_kv_heads)
      : pages(num_pages),
        kv_heads(num_kv_heads),
        k(static_cast<size_t>(num_pages * kPageSize * num_kv_heads * kHeadDim)),
        v(k.size()),
        table(static_cast<size_t>(num_pages)) {
    std::iota(table.begin(), table.end(), 0);
    for (size_t i = 0; i < table.size(); ++i)
      std::swap(table[i], table[(i * 7 + 3) % table.size()]);
  }
  // Offset of (position, kv head) in either cache, through the block table.
  size_t offset(int64_t position, int64_t kvh) const {
    const int64_t page = table[size_t(position / kPageSize)];
    return size_t(((page * kPageSize + position % kPageSize) * kv_heads + kvh) * kHeadDim);
  }
  TensorView k_view() {
    return make_view(k.data(), DType::kF32, {pages, kPageSize, kv_heads, kHeadDim});
  }
  TensorView v_view() {
    return make_view(v.data(), DType::kF32, {pages, kPageSize, kv_heads, kHeadDim});
  }
  TensorView table_view() { return make_view(table.data(), DType::kI32, {1, pages}); }

  int64_t pages, kv_heads;
  std::vector<float> k, v;
  std::vector<int32_t> table;
};

}  // namespace

void bench_paged_kv_append(const RunCase& run_case) {
  const int64_t kv_heads = 8, context = 4096;
  const int64_t token_counts[] = {1, 16};
  for (int64_t t : token_counts) {
    PagedLayer layer(context / kPageSize, kv_heads);
    const int64_t row = kv_heads * kHeadDim;
    std::vector<float> k = random_floats(size_t(t * row), 21);
    std::vector<float> v = random_floats(size_t(t * row), 22);
    std::vector<int32_t> seq_ids(static_cast<size_t>(t), 0), pos(static_cast<size_t>(t));
    for (int64_t i = 0; i < t; ++i) pos[size_t(i)] = int32_t(context - t + i);
    KernelCase c = make_case(
        "paged_kv_append",
        "k,v " + shape_str({t, kv_heads, kHeadDim}) + " page " + std::to_string(kPageSize),
        kF32 * 4.0 * double(t * row) + 8.0 * double(t));
    c.run = [&] {
      kernels::paged_kv_append(layer.k_view(), layer.v_view(), layer.table_view(),
                               make_view(seq_ids.data(), DType::kI32, {t}),
                               make_view(pos.data(), DType::kI32, {t}),
                               make_view(k.data(), DType::kF32, {t, kv_heads, kHeadDim}),
                               make_view(v.data(), DType::kF32, {t, kv_heads, kHeadDim}));
    };
    c.check = [&] {  // a copy: must be exact
      int64_t wrong = 0;
      for (int64_t i = 0; i < t; ++i) {
        const size_t at = layer.offset(pos[size_t(i)], 0);
        for (int64_t e = 0; e < row; ++e) {
          wrong += layer.k[at + size_t(e)] != k[size_t(i * row + e)];
          wrong += layer.v[at + size_t(e)] != v[size_t(i * row + e)];
        }
      }
      return wrong;
    };
    run_case(c);
  }
}

void bench_paged_attention(const RunCase& run_case) {
  struct Shape {
    int64_t context, heads, kv_heads;
  };
  const Shape shapes[] = {{1024, 32, 8}, {4096, 32, 8}, {1024, 32, 32}};
  for (const Shape& s : shapes) {
    // The source of truth is a contiguous [context, kv_heads, head_dim] K and V; the paged
    // caches are scattered copies of it.
    const int64_t row = s.kv_heads * kHeadDim;
    const std::vector<float> k_src = random_floats(size_t(s.context * row), 31);
    const std::vector<float> v_src = random_floats(size_t(s.context * row), 32);
    PagedLayer layer(s.context / kPageSize, s.kv_heads);
    for (int64_t p = 0; p < s.context; ++p) {
      for (int64_t e = 0; e < row; ++e) {
        layer.k[layer.offset(p, 0) + size_t(e)] = k_src[size_t(p * row + e)];
        layer.v[layer.offset(p, 0) + size_t(e)] = v_src[size_t(p * row + e)];
      }
    }
    std::vector<float> q = random_floats(size_t(s.heads * kHeadDim), 33);
    std::vector<float> out(q.size());
    std::vector<int32_t> seq_ids = {0}, pos = {int32_t(s.context - 1)};
    kernels::PagedAttentionParams p;
    p.out = make_view(out.data(), DType::kF32, {1, s.heads, kHeadDim});
    p.q = make_view(q.data(), DType::kF32, {1, s.heads, kHeadDim});
    p.k_cache = layer.k_view();
    p.v_cache = layer.v_view();
    p.block_tables = layer.table_view();
    p.seq_ids = make_view(seq_ids.data(), DType::kI32, {1});
    p.positions = make_view(pos.data(), DType::kI32, {1});
    // Ideal traffic: every KV row once (a kernel shares it across a GQA group), q, out, table.
    const double bytes = kF32 * (2.0 * double(s.context * row) + 2.0 * double(s.heads * kHeadDim)) +
                         4.0 * double(layer.pages);
    KernelCase c =
        make_case("paged_attention",
                  "ctx " + std::to_string(s.context) + " heads " + std::to_string(s.heads) + "/" +
                      std::to_string(s.kv_heads) + " d " + std::to_string(kHeadDim),
                  bytes, 4.0 * double(s.context * s.heads * kHeadDim));
    c.run = [&] { kernels::paged_attention(p); };
    c.check = [&] {  // contiguous-KV softmax attention, in double, for four heads
      int64_t wrong = 0;
      const int64_t group = s.heads / s.kv_heads;
      const double scale = 1.0 / std::sqrt(double(kHeadDim));
      std::vector<double> w(static_cast<size_t>(s.context));
      for (int64_t h : {int64_t(0), int64_t(7), s.heads / 2 + 3, s.heads - 1}) {
        const float* qh = q.data() + h * kHeadDim;
        const int64_t kvh = h / group;
        double max_score = -INFINITY, denom = 0.0;
        for (int64_t j = 0; j < s.context; ++j) {
          const float* kj = k_src.data() + j * row + kvh * kHeadDim;
          double dot = 0.0;
          for (int64_t d = 0; d < kHeadDim; ++d) dot += double(qh[d]) * kj[d];
          w[size_t(j)] = dot * scale;
          max_score = std::max(max_score, w[size_t(j)]);
        }
        for (double& x : w) denom += (x = std::exp(x - max_score));
        for (int64_t d = 0; d < kHeadDim; ++d) {
          double acc = 0.0;
          for (int64_t j = 0; j < s.context; ++j) {
            acc += w[size_t(j)] * v_src[size_t(j * row + kvh * kHeadDim + d)];
          }
          wrong += !is_close(out[size_t(h * kHeadDim + d)], acc / denom, 1e-5, 1e-4);
        }
      }
      return wrong;
    };
    run_case(c);
  }
}

}  // namespace tidal::bench
