// SPDX-License-Identifier: Apache-2.0
// A random decode batch for the attention ops' tests: a paged KV cache whose pages are shuffled
// over the pool, sequences of given lengths, and per-token plans of every role (dense, select,
// reselect, sparse lists of any granularity, Quest page lists), as the engine lays them out.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/decode_attention.h"
#include "kernels/fp8_e4m3.h"
#include "kernels/paged_kv_append.h"
#include "kernels/token_role.h"
#include "runtime/tensor.h"
#include "tests/testing/testing.h"

namespace tidal::kernels::testing_attention {

// An FP8 copy of an f32 cache [pages, page_size, kv_heads, head_dim]: codes, per-row scales and
// the f32 cache of the values the codes hold.
struct Fp8Cache {
  HostTensor codes, scale, dequant;
  explicit Fp8Cache(const HostTensor& f32) {
    const std::vector<int64_t>& s = f32.shape();
    codes = HostTensor(s, DType::kU8);
    scale = HostTensor({s[0], s[2], s[1]}, DType::kF32);  // [pages, kv_heads, page_size]
    dequant = HostTensor(s, DType::kF32);
    quantize_kv_cache(f32.view(), codes.view(), scale.view());
    const int64_t rows = s[0] * s[1] * s[2], dim = s[3];
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t page = r / (s[1] * s[2]), slot = r / s[2] % s[1], head = r % s[2];
      dequantize_e4m3_row(codes.view().data_as<uint8_t>() + r * dim,
                          scale.view().data_as<float>()[(page * s[2] + head) * s[1] + slot], dim,
                          dequant.view().data_as<float>() + r * dim);
    }
  }
};

struct TokenPlan {
  TokenRole role;
  int32_t n;           // positions 0..n-1 are cached
  int32_t lists = 0;   // L of a list-attending token, or of the lists a selecting token picks
  int32_t budget = 0;  // K: each list holds min(K, n) positions (Quest: whole pages)
  int32_t seq = -1;    // block-table row; -1: a row of its own
};

struct AttentionShape {
  int64_t num_heads, num_kv_heads, head_dim, page_size = 16;
};

// Tokens read block-table rows (sequences) of their own unless they name one; a row's pages
// are drawn from one shuffled pool, and table entries past a row's pages hold -1 (a read of them
// would show).
struct AttentionBatch {
  AttentionShape shape;
  int64_t num_tokens = 0, num_rows = 0, max_pages = 0, num_pages = 0, max_lists = 1, max_budget = 1,
          max_len = 1;
  HostTensor q, k_cache, v_cache;  // f32
  std::vector<int32_t> block_tables, seq_ids, lengths, counts, indices, num_lists;
  std::vector<uint8_t> roles;

  AttentionBatch(const AttentionShape& s, const std::vector<TokenPlan>& plans, uint32_t seed)
      : shape(s), num_tokens(int64_t(plans.size())) {
    std::mt19937 rng(seed);
    for (const TokenPlan& tp : plans) {
      max_len = std::max<int64_t>(max_len, tp.n);
      max_lists = std::max<int64_t>(max_lists, tp.lists);
    }
    max_pages = (max_len + s.page_size - 1) / s.page_size;
    for (const TokenPlan& tp : plans) num_rows = std::max<int64_t>(num_rows, tp.seq + 1);
    std::vector<int64_t> row_len;  // positions each row must hold
    for (const TokenPlan& tp : plans) {
      seq_ids.push_back(tp.seq >= 0 ? tp.seq : int32_t(num_rows++));
      row_len.resize(size_t(num_rows), 0);
      row_len[size_t(seq_ids.back())] = std::max<int64_t>(row_len[size_t(seq_ids.back())], tp.n);
    }
    for (int64_t len : row_len) num_pages += (len + s.page_size - 1) / s.page_size;
    num_pages += 3;  // spare pages nobody references
    std::vector<int32_t> pool(static_cast<size_t>(num_pages));
    std::iota(pool.begin(), pool.end(), 0);
    std::shuffle(pool.begin(), pool.end(), rng);
    const uint32_t base = uint32_t(rng());  // before the lists: equal caches for equal lengths
    block_tables.assign(size_t(num_rows * max_pages), -1);
    size_t next = 0;
    for (int64_t r = 0; r < num_rows; ++r) {
      for (int64_t i = 0; i < (row_len[size_t(r)] + s.page_size - 1) / s.page_size; ++i) {
        block_tables[size_t(r * max_pages + i)] = pool[next++];
      }
    }
    // Lists: K - 1 random earlier positions plus n - 1 (Quest: random whole pages plus the
    // current page), ascending.
    std::vector<std::vector<int32_t>> made;
    for (const TokenPlan& tp : plans) {
      for (int64_t l = 0; l < max_lists; ++l) {
        std::vector<int32_t> list;
        const bool used = !is_dense_range(tp.role) && l < tp.lists;
        if (used && tp.role == TokenRole::kQuest) {
          const int32_t pages = int32_t((tp.n + s.page_size - 1) / s.page_size);
          std::vector<int32_t> order(size_t(pages - 1));
          std::iota(order.begin(), order.end(), 0);
          std::shuffle(order.begin(), order.end(), rng);
          order.resize(std::min<size_t>(order.size(),
                                        size_t(std::max<int64_t>(0, tp.budget / s.page_size - 1))));
          order.push_back(pages - 1);
          for (int32_t pg : order) {
            for (int64_t j = pg * s.page_size; j < std::min<int64_t>(tp.n, (pg + 1) * s.page_size);
                 ++j) {
              list.push_back(int32_t(j));
            }
          }
        } else if (used) {
          std::vector<int32_t> earlier(size_t(tp.n - 1));
          std::iota(earlier.begin(), earlier.end(), 0);
          std::shuffle(earlier.begin(), earlier.end(), rng);
          earlier.resize(std::min<size_t>(earlier.size(), size_t(std::max(0, tp.budget - 1))));
          list = earlier;
          list.push_back(tp.n - 1);
        }
        std::sort(list.begin(), list.end());
        max_budget = std::max<int64_t>(max_budget, int64_t(list.size()));
        made.push_back(std::move(list));
      }
    }
    indices.assign(size_t(num_tokens * max_lists * max_budget), -7);  // padding is never read
    counts.assign(size_t(num_tokens * max_lists), -7);
    for (size_t r = 0; r < made.size(); ++r) {
      if (made[r].empty()) continue;
      counts[r] = int32_t(made[r].size());
      std::copy(made[r].begin(), made[r].end(), indices.begin() + int64_t(r) * max_budget);
    }
    for (int64_t t = 0; t < num_tokens; ++t) {
      const TokenPlan& tp = plans[size_t(t)];
      lengths.push_back(tp.n);
      roles.push_back(uint8_t(tp.role));
      num_lists.push_back(tp.role == TokenRole::kDense ? 0 : tp.lists);
    }
    q = testing::random_tensor({num_tokens, s.num_heads, s.head_dim}, base + 1);
    k_cache =
        testing::random_tensor({num_pages, s.page_size, s.num_kv_heads, s.head_dim}, base + 2);
    v_cache =
        testing::random_tensor({num_pages, s.page_size, s.num_kv_heads, s.head_dim}, base + 3);
  }

  // Params over tokens [t0, t1) of the plan (host views; the caller fills in q/caches/outputs
  // views of its own device or dtype where it needs to). Outputs are views of the sub-batch.
  DecodeAttentionParams params(int64_t t0, int64_t t1) const {
    const int64_t n = t1 - t0;
    auto view = [](const std::vector<int32_t>& v, int64_t offset,
                   std::initializer_list<int64_t> shape) {
      return make_view(const_cast<int32_t*>(v.data()) + offset, DType::kI32, shape);
    };
    DecodeAttentionParams p;
    p.q = q.view().slice(t0, t1);
    p.k_cache = k_cache.view();
    p.v_cache = v_cache.view();
    p.block_tables = view(block_tables, 0, {num_rows, max_pages});
    p.seq_ids = view(seq_ids, t0, {n});
    p.lengths = view(lengths, t0, {n});
    p.roles = make_view(const_cast<uint8_t*>(roles.data()) + t0, DType::kU8, {n});
    p.indices = view(indices, t0 * max_lists * max_budget, {n, max_lists, max_budget});
    p.counts = view(counts, t0 * max_lists, {n, max_lists});
    p.num_lists = view(num_lists, t0, {n});
    return p;
  }
};

}  // namespace tidal::kernels::testing_attention
