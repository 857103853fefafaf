// SPDX-License-Identifier: Apache-2.0
// A selection layer on a constructed cache where one distant position dominates the attention:
// every granularity keeps it at every budget >= 2, beside the current token.
#include "model/blocks.h"

#include <algorithm>

#include "kernels/token_role.h"
#include "runtime/tensor_access.h"
#include "tests/testing/model_config.h"
#include "tests/testing/testing.h"

namespace tidal::model {
namespace {

constexpr int64_t kPageSize = 16, kPages = 4, kContext = kPages * kPageSize;
constexpr int64_t kDominant = 5;

ModelConfig config() {
  testing::TinyLlama t;
  t.layers = 8;
  t.head_dim = 8;
  t.context = kContext;
  return testing::tiny_llama(t);
}

TEST(SelectionLayer, DistantDominantPositionIsAlwaysSelected) {
  const ModelConfig c = config();
  // Keys: small noise, except position 5 of both KV heads, aligned with every query head.
  HostTensor k = testing::random_tensor({kPages, kPageSize, 2, 8}, 7, 0.1f);
  HostTensor v = testing::random_tensor({kPages, kPageSize, 2, 8}, 8);
  int32_t table[kPages] = {2, 0, 3, 1};  // pages out of order: position 5 is in page 2
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t d = 0; d < 8; ++d) {
      set_f32(k.view(), table[0], kDominant, h, d, d % 2 ? 2.0f : -2.0f);
    }
  }
  HostTensor q({1, 4, 8}, DType::kF32);
  for (int64_t h = 0; h < 4; ++h) {
    for (int64_t d = 0; d < 8; ++d) set_f32(q.view(), 0, h, d, d % 2 ? 1.5f : -1.5f);
  }
  KvLayer kv;
  kv.k = k.view();
  kv.v = v.view();
  // One decode token at the last position, selecting in layer 2 (sparse_start).
  int32_t position = int32_t(kContext - 1), seq = 0, n = int32_t(kContext), lists = 0, budget = 0;
  int32_t page_length = int32_t(kPages), page_budget = 1;
  std::vector<uint8_t> roles(size_t(c.num_layers), uint8_t(kernels::TokenRole::kDense));
  std::vector<uint8_t> layer_ops(size_t(c.num_layers), 0);
  roles[2] = uint8_t(kernels::TokenRole::kSelect);
  layer_ops[2] = kLayerSelects;
  ForwardBatch b;
  b.positions = make_view(&position, DType::kI32, {1});
  b.seq_ids = make_view(&seq, DType::kI32, {1});
  b.num_decode = 1;
  b.lengths = make_view(&n, DType::kI32, {1});
  b.num_lists = make_view(&lists, DType::kI32, {1});
  b.budgets = make_view(&budget, DType::kI32, {1});
  b.page_lengths = make_view(&page_length, DType::kI32, {1});
  b.page_budgets = make_view(&page_budget, DType::kI32, {1});
  b.roles = make_view(roles.data(), DType::kU8, {c.num_layers, 1});
  b.layer_ops = layer_ops.data();
  b.block_tables = make_view(table, DType::kI32, {1, kPages});

  WorkspaceShape shape;
  shape.max_tokens = 1;
  shape.max_decode = 1;
  shape.max_logits = 1;
  shape.num_rows = 1;
  shape.max_context = kContext;
  shape.max_budget = kContext;
  shape.page_size = kPageSize;
  LlamaWorkspace ws;
  ASSERT_TRUE(LlamaWorkspace::create(c, shape, &ws).ok());
  HostTensor out({1, 4, 8}, DType::kF32);

  for (Granularity g :
       {Granularity::kPerQueryHead, Granularity::kPerKvHead, Granularity::kShared}) {
    for (budget = 2; budget <= kContext; budget *= 2) {
      lists = int32_t(num_lists(g, c));
      attention_layer(c, /*layer=*/2, b, kv, ws, q.view(), out.view(), Stream{});
      for (int64_t l = 0; l < lists; ++l) {
        const int32_t count = ws.counts.data_as<int32_t>()[l];
        const int32_t* list = ws.lists.data_as<int32_t>() + l * ws.lists.size(2);
        EXPECT_EQ(count, budget) << granularity_name(g);
        EXPECT_TRUE(std::binary_search(list, list + count, int32_t(kDominant)))
            << granularity_name(g) << " budget " << budget;
        EXPECT_EQ(list[count - 1], position);  // the current token, always
      }
    }
  }
}

}  // namespace
}  // namespace tidal::model
