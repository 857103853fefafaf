// SPDX-License-Identifier: Apache-2.0
// decode_attention on the GPU against ref:: over named shapes: every role and list granularity
// in mixed batches, random caches behind shuffled block tables, n = 1 .. 32K, budgets 2, 37 and
// K >= n, num_splits 1, 3 and auto, every dtype; outputs poisoned first, logits compared at every
// written position and checked untouched everywhere else.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kernels/decode_attention.h"
#include "tests/kernels/attention_batch.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

using testing::DeviceTensor;
using testing_attention::AttentionBatch;
using testing_attention::AttentionShape;
using testing_attention::TokenPlan;

struct Case {
  std::string name;
  AttentionShape shape;
  DType dtype;
  int64_t num_splits;  // 0: auto
  std::vector<TokenPlan> tokens;
};

constexpr TokenRole kDense = TokenRole::kDense, kSelect = TokenRole::kSelect,
                    kReselect = TokenRole::kReselect, kSparse = TokenRole::kSparse,
                    kQuest = TokenRole::kQuest;

// Every role, n = 1, 7, 16 (one page), 17, 733; budgets 2, 37, K >= n; L = H, KVH, 1.
std::vector<TokenPlan> small_mix(int32_t h, int32_t kvh) {
  return {{kDense, 1, 0, 0, 0},     {kSelect, 7, 0, 0, 1},       {kReselect, 16, 0, 0, 2},
          {kDense, 17, 0, 0, 2},    {kSparse, 733, h, 37, 0},    {kSparse, 733, kvh, 2, 0},
          {kSparse, 17, 1, 37, 2},  {kQuest, 733, h, 64, 0},     {kSelect, 733, 0, 0, 0},
          {kSparse, 1, kvh, 2, -1}, {kQuest, 16, kvh, 16, 1},    {kReselect, 1, 0, 0, -1}};
}

// The small mix plus n = 4100 rows: dense, reselect, lists of 37 and of every position.
std::vector<TokenPlan> large_mix(int32_t h, int32_t kvh) {
  std::vector<TokenPlan> t = small_mix(h, kvh);
  t.push_back({kDense, 4100, 0, 0, 3});
  t.push_back({kReselect, 4099, 0, 0, 3});
  t.push_back({kSparse, 4100, kvh, 37, 3});
  t.push_back({kSparse, 4100, 1, 4100, 3});
  t.push_back({kQuest, 4100, h, 128, 3});
  t.push_back({kSparse, 4000, h, 2, 3});
  return t;
}

std::vector<Case> cases() {
  struct Named {
    std::string name;
    AttentionShape shape;
  };
  const std::vector<Named> shapes = {{"mha32_d128", {32, 32, 128, 16}},
                                     {"gqa32x8_d128", {32, 8, 128, 16}},
                                     {"gqa4x1_d64", {4, 1, 64, 16}},
                                     {"stories_gqa8x4_d8", {8, 4, 8, 16}}};
  std::vector<Case> out;
  for (const Named& s : shapes) {
    const int32_t h = int32_t(s.shape.num_heads), kvh = int32_t(s.shape.num_kv_heads);
    out.push_back({s.name + "_small_f32", s.shape, DType::kF32, 0, small_mix(h, kvh)});
    out.push_back({s.name + "_small_f16", s.shape, DType::kF16, 0, small_mix(h, kvh)});
    out.push_back({s.name + "_small_bf16_splits3", s.shape, DType::kBF16, 3, small_mix(h, kvh)});
    out.push_back({s.name + "_large_bf16", s.shape, DType::kBF16, 0, large_mix(h, kvh)});
    out.push_back({s.name + "_large_bf16_splits1", s.shape, DType::kBF16, 1, large_mix(h, kvh)});
    out.push_back({s.name + "_large_f16_splits3", s.shape, DType::kF16, 3, large_mix(h, kvh)});
  }
  // A page size that is no power of two (the division path) and a two-head GQA group.
  out.push_back({"gqa32x8_d128_page7_bf16", {32, 8, 128, 7}, DType::kBF16, 0, small_mix(32, 8)});
  out.push_back({"gqa16x8_d32_page5_f32", {16, 8, 32, 5}, DType::kF32, 3, small_mix(16, 8)});
  out.push_back({"gqa12x4_d16_f16", {12, 4, 16, 16}, DType::kF16, 0, small_mix(12, 4)});
  // Llama-3-8B attention at 32K: selection, per-KV-head lists of 2048, per-head lists of 37,
  // all over one sequence.
  out.push_back({"llama3_gqa32x8_d128_32k_bf16",
                 {32, 8, 128, 16},
                 DType::kBF16,
                 0,
                 {{kSelect, 32768, 0, 0, 0}, {kSparse, 32768, 8, 2048, 0},
                  {kSparse, 32000, 32, 37, 0}}});
  return out;
}

class DecodeAttentionCuda : public ::testing::TestWithParam<Case> {};

TEST_P(DecodeAttentionCuda, MatchesReference) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const Case& c = GetParam();
  const AttentionShape& s = c.shape;
  const AttentionBatch b(s, c.tokens, uint32_t(std::hash<std::string>{}(c.name)));
  const int64_t tokens = b.num_tokens;

  // The reference on the inputs rounded to the kernel's dtype (held as f32).
  const HostTensor q = testing::convert(testing::convert(b.q.view(), c.dtype).view(), DType::kF32);
  const HostTensor kc =
      testing::convert(testing::convert(b.k_cache.view(), c.dtype).view(), DType::kF32);
  const HostTensor vc =
      testing::convert(testing::convert(b.v_cache.view(), c.dtype).view(), DType::kF32);
  HostTensor out_ref({tokens, s.num_heads, s.head_dim}, DType::kF32);
  HostTensor lse_ref({tokens, s.num_heads}, DType::kF32);
  HostTensor logits_ref({tokens, s.num_heads, b.max_len}, DType::kF32);
  DecodeAttentionParams r = b.params(0, tokens);
  r.q = q.view();
  r.k_cache = kc.view();
  r.v_cache = vc.view();
  r.out = out_ref.view();
  r.lse = lse_ref.view();
  r.logits = logits_ref.view();
  ref::decode_attention(r);

  // The GPU run on device copies; outputs poisoned with 0xFF (NaN).
  const DeviceTensor q_d = DeviceTensor::from_host(q.view(), c.dtype);
  const DeviceTensor k_d = DeviceTensor::from_host(kc.view(), c.dtype);
  const DeviceTensor v_d = DeviceTensor::from_host(vc.view(), c.dtype);
  const DecodeAttentionParams h = b.params(0, tokens);
  const DeviceTensor bt_d = DeviceTensor::from_host(h.block_tables);
  const DeviceTensor seq_d = DeviceTensor::from_host(h.seq_ids);
  const DeviceTensor len_d = DeviceTensor::from_host(h.lengths);
  const DeviceTensor roles_d = DeviceTensor::from_host(h.roles);
  const DeviceTensor idx_d = DeviceTensor::from_host(h.indices);
  const DeviceTensor counts_d = DeviceTensor::from_host(h.counts);
  const DeviceTensor lists_d = DeviceTensor::from_host(h.num_lists);
  const DeviceTensor out_d = DeviceTensor::filled({tokens, s.num_heads, s.head_dim}, c.dtype, 0xFF);
  const DeviceTensor lse_d = DeviceTensor::filled({tokens, s.num_heads}, DType::kF32, 0xFF);
  const DeviceTensor logits_d =
      DeviceTensor::filled({tokens, s.num_heads, b.max_len}, DType::kF32, 0xFF);
  DecodeAttentionParams p;
  p.out = out_d.view();
  p.q = q_d.view();
  p.k_cache = k_d.view();
  p.v_cache = v_d.view();
  p.block_tables = bt_d.view();
  p.seq_ids = seq_d.view();
  p.lengths = len_d.view();
  p.roles = roles_d.view();
  p.indices = idx_d.view();
  p.counts = counts_d.view();
  p.num_lists = lists_d.view();
  p.logits = logits_d.view();
  p.lse = lse_d.view();
  p.num_splits = c.num_splits;
  const size_t ws_bytes = decode_attention_workspace_size(p);
  // The workspace depends on the shapes only: the same with every data pointer null.
  DecodeAttentionParams shapes_only = p;
  for (TensorView* v : {&shapes_only.out, &shapes_only.q, &shapes_only.k_cache,
                        &shapes_only.v_cache, &shapes_only.logits, &shapes_only.lse}) {
    v->data = nullptr;
  }
  EXPECT_EQ(decode_attention_workspace_size(shapes_only), ws_bytes);
  const DeviceTensor ws = DeviceTensor::filled({int64_t(std::max<size_t>(ws_bytes, 1))},
                                               DType::kU8, 0xFF);
  decode_attention(p, ws.view(), Stream{});
  stream_synchronize(Stream{});

  const testing::Tolerance tol = testing::tolerance(c.dtype);
  EXPECT_TRUE(testing::all_close(out_d.to_floats(), testing::to_vector(out_ref.view()), tol.atol,
                                 tol.rtol))
      << "out";
  EXPECT_TRUE(testing::all_close(lse_d.to_floats(), testing::to_vector(lse_ref.view()), 1e-4f,
                                 1e-4f))
      << "lse";

  // Logits: equal at every written position (selecting tokens, j < n); poison everywhere else.
  const std::vector<float> logits = logits_d.to_floats();
  const std::vector<float> want_logits = testing::to_vector(logits_ref.view());
  std::vector<float> got_written, want_written;
  int64_t overwritten = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    const bool selecting = is_selecting(TokenRole(b.roles[size_t(t)]));
    for (int64_t hd = 0; hd < s.num_heads; ++hd) {
      for (int64_t j = 0; j < b.max_len; ++j) {
        const size_t at = size_t((t * s.num_heads + hd) * b.max_len + j);
        if (selecting && j < b.lengths[size_t(t)]) {
          got_written.push_back(logits[at]);
          want_written.push_back(want_logits[at]);
        } else {
          uint32_t bits;
          std::memcpy(&bits, &logits[at], 4);
          overwritten += bits != 0xFFFFFFFFu;
        }
      }
    }
  }
  EXPECT_TRUE(testing::all_close(got_written, want_written, 1e-4f, 1e-4f)) << "logits";
  EXPECT_EQ(overwritten, 0) << "logits written outside selecting tokens' rows 0..n-1";
}

INSTANTIATE_TEST_SUITE_P(Shapes, DecodeAttentionCuda, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace tidal::kernels
