// SPDX-License-Identifier: Apache-2.0
// A selection layer on a constructed cache where one distant position dominates the attention:
// every granularity keeps it at every budget >= 2, beside the current token.
#include "model/blocks.h"

#include <algorithm>

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
  int32_t position = int32_t(kContext - 1), seq = 0;
  uint8_t decode = 1;
  ForwardBatch b;
  b.positions = make_view(&position, DType::kI32, {1});
  b.seq_ids = make_view(&seq, DType::kI32, {1});
  b.block_tables = make_view(table, DType::kI32, {1, kPages});
  b.decode = make_view(&decode, DType::kU8, {1});

  WorkspaceShape shape;
  shape.max_tokens = 1;
  shape.max_seqs = 1;
  shape.max_context = kContext;
  shape.max_budget = kContext;
  shape.page_size = kPageSize;
  LlamaWorkspace ws;
  ASSERT_TRUE(LlamaWorkspace::create(c, shape, &ws).ok());
  HostTensor out({1, 4, 8}, DType::kF32);

  for (Granularity g :
       {Granularity::kPerQueryHead, Granularity::kPerKvHead, Granularity::kShared}) {
    for (int64_t budget = 2; budget <= kContext; budget *= 2) {
      AttentionPolicy policy;
      policy.kind = AttentionKind::kTidal;
      policy.tidal.budget = budget;
      policy.tidal.granularity = g;
      std::vector<LayerTrace> trace;
      SequenceAttention sa;
      sa.policy = &policy;
      sa.trace = &trace;
      b.attention = &sa;
      attention_layer(c, /*layer=*/2, b, kv, ws, q.view(), out.view());  // sparse_start: select
      ASSERT_EQ(trace.size(), 1u);
      EXPECT_EQ(trace[0].role, LayerRole::kSelect);
      EXPECT_EQ(int64_t(trace[0].lists.size()), num_lists(g, c));
      for (const std::vector<int32_t>& list : trace[0].lists) {
        EXPECT_EQ(int64_t(list.size()), budget) << granularity_name(g);
        EXPECT_TRUE(std::binary_search(list.begin(), list.end(), int32_t(kDominant)))
            << granularity_name(g) << " budget " << budget;
        EXPECT_EQ(list.back(), position);  // the current token, always
      }
    }
  }
}

}  // namespace
}  // namespace tidal::model
