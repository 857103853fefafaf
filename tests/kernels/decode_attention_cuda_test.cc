// SPDX-License-Identifier: Apache-2.0
// decode_attention on the GPU against ref:: over named shapes: every role and list granularity
// in mixed batches, random caches behind shuffled block tables, n = 1 .. 32K, budgets 2, 37 and
// K >= n, num_splits 1, 3 and auto, every dtype, both split kernels (SIMT: MHA, f32, small
// head_dims; tensor cores: 16-bit GQA groups of 2, 3, 4 and 8 at head_dim 64 / 128); outputs
// poisoned first, logits compared at every written position and checked untouched elsewhere.
// FP8 caches (e4m3 codes with a scale per row) on both kernels, against the reference over the
// same codes and scales.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cache_rows.h"
#include "kernels/decode_attention.h"
#include "runtime/device.h"
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
  bool fp8 = false;  // FP8 e4m3 caches
};

constexpr TokenRole kDense = TokenRole::kDense, kSelect = TokenRole::kSelect,
                    kReselect = TokenRole::kReselect, kSparse = TokenRole::kSparse,
                    kQuest = TokenRole::kQuest;

// Every role, n = 1, 7, 16 (one page), 17, 733; budgets 2, 37, K >= n; L = H, KVH, 1; selecting
// tokens that pick lists of a group of heads (KVH < H, or 1: f16 logits, logits16) and of one.
std::vector<TokenPlan> small_mix(int32_t h, int32_t kvh) {
  return {{kDense, 1, 0, 0, 0},     {kSelect, 7, 0, 0, 1},       {kReselect, 16, 0, 0, 2},
          {kDense, 17, 0, 0, 2},    {kSparse, 733, h, 37, 0},    {kSparse, 733, kvh, 2, 0},
          {kSparse, 17, 1, 37, 2},  {kQuest, 733, h, 64, 0},     {kSelect, 733, 0, 0, 0},
          {kSparse, 1, kvh, 2, -1}, {kQuest, 16, kvh, 16, 1},    {kReselect, 1, 0, 0, -1},
          {kSelect, 733, kvh, 0, -1}, {kReselect, 17, 1, 0, 2}, {kSelect, 40, h, 0, -1}};
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
  // The tensor-core kernel (16-bit, head_dim 64 / 128, 2-4 query heads per block): a group of
  // 2; a group of 3 (per-head lists: three passes and an idle warp; L = 6: passes of 2 and 1
  // heads); a group of 8 (two blocks per KV head); L = 16 lists under 32/8 (two passes of 2).
  out.push_back({"gqa16x8_d128_f16", {16, 8, 128, 16}, DType::kF16, 0, small_mix(16, 8)});
  out.push_back(
      {"gqa16x8_d64_large_bf16_splits3", {16, 8, 64, 16}, DType::kBF16, 3, large_mix(16, 8)});
  std::vector<TokenPlan> group3 = small_mix(12, 4);
  group3.push_back({kSparse, 733, 6, 37, 0});
  group3.push_back({kSparse, 4100, 6, 300, 3});
  group3.push_back({kSparse, 4100, 12, 1000, 3});
  group3.push_back({kSelect, 4100, 0, 0, 3});
  out.push_back({"gqa12x4_d64_bf16", {12, 4, 64, 16}, DType::kBF16, 0, group3});
  out.push_back({"gqa12x4_d128_page7_f16_splits3", {12, 4, 128, 7}, DType::kF16, 3, group3});
  out.push_back({"gqa16x2_d128_bf16", {16, 2, 128, 16}, DType::kBF16, 0, large_mix(16, 2)});
  out.push_back({"gqa32x8_d128_lists16_bf16",
                 {32, 8, 128, 16},
                 DType::kBF16,
                 0,
                 {{kSparse, 4100, 16, 300, 0},
                  {kSparse, 733, 16, 2, 1},
                  {kSparse, 4100, 16, 4100, 0},
                  {kQuest, 900, 16, 64, 1},
                  {kSelect, 4100, 0, 0, 0}}});
  // Llama-3-8B attention at 32K: selection, per-KV-head lists of 2048, per-head lists of 37,
  // all over one sequence.
  const std::vector<TokenPlan> llama3_32k = {
      {kSelect, 32768, 0, 0, 0}, {kSparse, 32768, 8, 2048, 0}, {kSparse, 32000, 32, 37, 0}};
  out.push_back({"llama3_gqa32x8_d128_32k_bf16", {32, 8, 128, 16}, DType::kBF16, 0, llama3_32k});
  // FP8 caches: the tensor-core kernel (GQA 16-bit at head_dim 64 / 128, groups of 2, 3, 4 and
  // 8, split or not) and the SIMT one (MHA, f32, small head_dims, a page of 7).
  const std::vector<Case> fp8 = {
      {"fp8_gqa32x8_d128_large_bf16", {32, 8, 128, 16}, DType::kBF16, 0, large_mix(32, 8)},
      {"fp8_gqa32x8_d128_small_f16_splits3", {32, 8, 128, 16}, DType::kF16, 3, small_mix(32, 8)},
      {"fp8_gqa4x1_d64_large_bf16", {4, 1, 64, 16}, DType::kBF16, 0, large_mix(4, 1)},
      {"fp8_gqa4x1_d64_small_f16_splits1", {4, 1, 64, 16}, DType::kF16, 1, small_mix(4, 1)},
      {"fp8_gqa12x4_d64_bf16", {12, 4, 64, 16}, DType::kBF16, 0, group3},
      {"fp8_gqa16x2_d128_page7_bf16", {16, 2, 128, 7}, DType::kBF16, 0, small_mix(16, 2)},
      {"fp8_mha32_d128_large_bf16", {32, 32, 128, 16}, DType::kBF16, 0, large_mix(32, 32)},
      {"fp8_mha32_d128_small_f32", {32, 32, 128, 16}, DType::kF32, 3, small_mix(32, 32)},
      {"fp8_stories_gqa8x4_d8_small_f32", {8, 4, 8, 16}, DType::kF32, 0, small_mix(8, 4)},
      {"fp8_stories_gqa8x4_d8_large_bf16", {8, 4, 8, 16}, DType::kBF16, 0, large_mix(8, 4)},
      {"fp8_gqa16x8_d32_page5_f16", {16, 8, 32, 5}, DType::kF16, 3, small_mix(16, 8)},
      {"fp8_llama3_gqa32x8_d128_32k_bf16", {32, 8, 128, 16}, DType::kBF16, 0, llama3_32k},
      // Many splits: the own merge's rows of more than 64 partials (the selecting row: 86) and,
      // at head_dim 64, more than one batch of 32.
      {"fp8_llama3_gqa32x8_d128_32k_bf16_splits100",
       {32, 8, 128, 16},
       DType::kBF16,
       100,
       llama3_32k},
      {"fp8_gqa4x1_d64_large_bf16_splits100", {4, 1, 64, 16}, DType::kBF16, 100, large_mix(4, 1)},
  };
  for (Case c : fp8) {
    c.fp8 = true;
    out.push_back(std::move(c));
  }
  return out;
}

// The reference on the batch's inputs rounded to the kernel's dtype (held as f32); with `fp8`,
// the caches are those values quantized as paged_kv_append does (codes and row scales).
struct Expected {
  HostTensor q, k_cache, v_cache;  // rounded inputs (FP8: u8 codes)
  HostTensor k_scale, v_scale;     // FP8 only
  HostTensor out, lse, logits, logits16;

  Expected(const AttentionBatch& b, DType dtype, bool fp8 = false)
      : q(round(b.q, dtype)),
        k_cache(round(b.k_cache, dtype)),
        v_cache(round(b.v_cache, dtype)),
        out({b.num_tokens, b.shape.num_heads, b.shape.head_dim}, DType::kF32),
        lse({b.num_tokens, b.shape.num_heads}, DType::kF32),
        logits({b.num_tokens, b.shape.num_heads, b.max_len}, DType::kF32),
        logits16({b.num_tokens, b.shape.num_heads, b.max_len}, DType::kF16) {
    if (fp8) {
      quantize(&k_cache, &k_scale);
      quantize(&v_cache, &v_scale);
    }
    compute(b);
  }
  static void quantize(HostTensor* cache, HostTensor* scale) {
    testing_attention::Fp8Cache f(*cache);
    *cache = std::move(f.codes);
    *scale = std::move(f.scale);
  }
  void compute(const AttentionBatch& b) {
    DecodeAttentionParams r = b.params(0, b.num_tokens);
    r.q = q.view();
    r.k_cache = k_cache.view();
    r.v_cache = v_cache.view();
    if (k_cache.dtype() == DType::kU8) {
      r.k_scale = k_scale.view();
      r.v_scale = v_scale.view();
    }
    r.out = out.view();
    r.lse = lse.view();
    r.logits = logits.view();
    r.logits16 = logits16.view();
    ref::decode_attention(r);
  }
  static HostTensor round(const HostTensor& x, DType dtype) {
    return testing::convert(testing::convert(x.view(), dtype).view(), DType::kF32);
  }
};

// Device copies of the inputs and plan, and poisoned outputs.
struct OnDevice {
  DeviceTensor q, k_cache, v_cache, k_scale, v_scale, block_tables, seq_ids, lengths, roles,
      indices, counts, num_lists, out, lse, logits, logits16, workspace;
  DecodeAttentionParams p;

  OnDevice(const AttentionBatch& b, const Expected& e, DType dtype, int64_t num_splits) {
    const DecodeAttentionParams h = b.params(0, b.num_tokens);
    q = DeviceTensor::from_host(e.q.view(), dtype);
    const bool fp8 = e.k_cache.view().dtype == DType::kU8;
    k_cache = DeviceTensor::from_host(e.k_cache.view(), fp8 ? DType::kU8 : dtype);
    v_cache = DeviceTensor::from_host(e.v_cache.view(), fp8 ? DType::kU8 : dtype);
    if (fp8) {
      k_scale = DeviceTensor::from_host(e.k_scale.view());
      v_scale = DeviceTensor::from_host(e.v_scale.view());
      p.k_scale = k_scale.view();
      p.v_scale = v_scale.view();
    }
    block_tables = DeviceTensor::from_host(h.block_tables);
    seq_ids = DeviceTensor::from_host(h.seq_ids);
    lengths = DeviceTensor::from_host(h.lengths);
    roles = DeviceTensor::from_host(h.roles);
    indices = DeviceTensor::from_host(h.indices);
    counts = DeviceTensor::from_host(h.counts);
    num_lists = DeviceTensor::from_host(h.num_lists);
    out = DeviceTensor::filled({b.num_tokens, b.shape.num_heads, b.shape.head_dim}, dtype, 0xFF);
    lse = DeviceTensor::filled({b.num_tokens, b.shape.num_heads}, DType::kF32, 0xFF);
    logits = DeviceTensor::filled({b.num_tokens, b.shape.num_heads, b.max_len}, DType::kF32, 0xFF);
    logits16 =
        DeviceTensor::filled({b.num_tokens, b.shape.num_heads, b.max_len}, DType::kF16, 0xFF);
    p.out = out.view();
    p.q = q.view();
    p.k_cache = k_cache.view();
    p.v_cache = v_cache.view();
    p.block_tables = block_tables.view();
    p.seq_ids = seq_ids.view();
    p.lengths = lengths.view();
    p.roles = roles.view();
    p.indices = indices.view();
    p.counts = counts.view();
    p.num_lists = num_lists.view();
    p.logits = logits.view();
    p.logits16 = logits16.view();
    p.lse = lse.view();
    p.num_splits = num_splits;
    const size_t bytes = decode_attention_workspace_size(p);
    workspace = DeviceTensor::filled({int64_t(std::max<size_t>(bytes, 1))}, DType::kU8, 0xFF);
  }
  // Rewrites the plan in place (same buffers: what a captured graph reads) and re-poisons.
  void upload_plan(const AttentionBatch& b) {
    const DecodeAttentionParams h = b.params(0, b.num_tokens);
    copy_view(lengths.view(), h.lengths, Stream{});
    copy_view(roles.view(), h.roles, Stream{});
    copy_view(indices.view(), h.indices, Stream{});
    copy_view(counts.view(), h.counts, Stream{});
    copy_view(num_lists.view(), h.num_lists, Stream{});
    for (const DeviceTensor* t : {&out, &lse, &logits, &logits16}) {
      fill_bytes(t->view().data, t->view().device, 0xFF, t->view().nbytes(), Stream{});
    }
    stream_synchronize(Stream{});
  }
};

// Every output element against the reference; logits equal at every written position
// (selecting tokens, j < n: f16 ones in logits16 for tokens whose lists a group of heads shares,
// f32 ones in logits for the others) and still poison everywhere else, in both buffers.
void expect_matches(const AttentionBatch& b, const Expected& want, const OnDevice& got, DType dtype,
                    const std::string& what) {
  const testing::Tolerance tol = testing::tolerance(dtype);
  EXPECT_TRUE(testing::all_close(got.out.to_floats(), testing::to_vector(want.out.view()), tol.atol,
                                 tol.rtol))
      << what << ": out";
  EXPECT_TRUE(
      testing::all_close(got.lse.to_floats(), testing::to_vector(want.lse.view()), 1e-4f, 1e-4f))
      << what << ": lse";
  const std::vector<float> logits = got.logits.to_floats();
  const std::vector<float> want_logits = testing::to_vector(want.logits.view());
  const std::vector<float> want_logits16 = testing::to_vector(want.logits16.view());
  const HostTensor logits16_h = got.logits16.to_host();
  const uint16_t* logits16_bits = static_cast<const uint16_t*>(logits16_h.view().data);
  const std::vector<float> logits16 = got.logits16.to_floats();
  std::vector<float> got_written, want_written, got16, want16;
  int64_t overwritten = 0, overwritten16 = 0;
  const int64_t heads = b.shape.num_heads;
  for (int64_t t = 0; t < b.num_tokens; ++t) {
    const bool selecting = is_selecting(TokenRole(b.roles[size_t(t)]));
    const bool group = selecting && has_group_lists(b.num_lists[size_t(t)], int32_t(heads));
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t j = 0; j < b.max_len; ++j) {
        const size_t at = size_t((t * heads + h) * b.max_len + j);
        const bool written = selecting && j < b.lengths[size_t(t)];
        if (written && !group) {
          got_written.push_back(logits[at]);
          want_written.push_back(want_logits[at]);
        } else {
          uint32_t bits;
          std::memcpy(&bits, &logits[at], 4);
          overwritten += bits != 0xFFFFFFFFu;
        }
        if (written && group) {
          got16.push_back(logits16[at]);
          want16.push_back(want_logits16[at]);
        } else {
          overwritten16 += logits16_bits[at] != 0xFFFFu;
        }
      }
    }
  }
  EXPECT_TRUE(testing::all_close(got_written, want_written, 1e-4f, 1e-4f)) << what << ": logits";
  EXPECT_EQ(overwritten, 0) << what << ": logits written outside selecting tokens' rows 0..n-1";
  // f16 of nearly equal f32 values: equal, or one f16 step apart where a rounding boundary lies
  // between them (2^-10 relative at most).
  EXPECT_TRUE(testing::all_close(got16, want16, 1e-4f, 1.0f / 1024)) << what << ": logits16";
  EXPECT_EQ(overwritten16, 0) << what
                              << ": logits16 written outside group-list selecting tokens' rows";
}

// DecodeAttentionParams::rows of a batch's lists (kSparse tokens; the others' name row 0).
std::vector<int32_t> cache_rows_of(const AttentionBatch& b, const std::vector<int32_t>& prior) {
  std::vector<int32_t> rows(b.indices.size(), kNoCacheRow);
  const int64_t page_size = b.shape.page_size;
  for (int64_t t = 0; t < b.num_tokens; ++t) {
    const bool sparse = TokenRole(b.roles[size_t(t)]) == TokenRole::kSparse;
    const int32_t* table = b.block_tables.data() + b.seq_ids[size_t(t)] * b.max_pages;
    const int32_t n = int32_t(std::min<int64_t>(b.lengths[size_t(t)], b.max_pages * page_size));
    for (int64_t l = 0; l < b.max_lists; ++l) {
      const int64_t at = (t * b.max_lists + l) * b.max_budget;
      const int32_t count = b.counts[size_t(t * b.max_lists + l)];
      if (sparse) {
        resolve_cache_rows(table, 1, b.indices.data() + at, count, b.max_budget, n,
                           int32_t(page_size), prior[size_t(t)], rows.data() + at);
      } else {
        std::fill_n(rows.begin() + at, std::max(count, 0), 0);
      }
    }
  }
  return rows;
}

class DecodeAttentionCuda : public ::testing::TestWithParam<Case> {};

TEST_P(DecodeAttentionCuda, MatchesReference) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const Case& c = GetParam();
  const AttentionBatch b(c.shape, c.tokens, uint32_t(std::hash<std::string>{}(c.name)));
  const Expected want(b, c.dtype, c.fp8);
  OnDevice d(b, want, c.dtype, c.num_splits);
  // The workspace depends on the shapes only: the same with every data pointer null.
  DecodeAttentionParams shapes_only = d.p;
  for (TensorView* v : {&shapes_only.out, &shapes_only.q, &shapes_only.k_cache,
                        &shapes_only.v_cache, &shapes_only.logits, &shapes_only.lse}) {
    v->data = nullptr;
  }
  EXPECT_EQ(decode_attention_workspace_size(shapes_only), decode_attention_workspace_size(d.p));
  decode_attention(d.p, d.workspace.view(), Stream{});
  stream_synchronize(Stream{});
  expect_matches(b, want, d, c.dtype, c.name);

  // Again with merge counters (the engine's path: the split blocks merge their own rows), twice
  // on the same counters: they must be back to zero after each launch.
  DeviceTensor counters =
      DeviceTensor::filled({b.num_tokens * b.shape.num_heads + 5}, DType::kI32, 0);
  d.p.merge_counters = counters.view();
  for (int rep = 0; rep < 2; ++rep) {
    d.upload_plan(b);  // re-poisons the outputs
    decode_attention(d.p, d.workspace.view(), Stream{});
    stream_synchronize(Stream{});
    expect_matches(b, want, d, c.dtype,
                   c.name + " (own merge, launch " + std::to_string(rep) + ")");
    const HostTensor left = counters.to_host();
    const int32_t* n = left.view().data_as<int32_t>();
    EXPECT_EQ(std::count(n, n + left.view().numel(), 0), left.view().numel())
        << c.name << ": merge counters not zero after launch " << rep;
  }

  // Again with prior_lens (the engine's path: the tensor-core kernel looks up its rows and
  // starts its first stages before the programmatic wait): the same results for any bound.
  std::vector<int32_t> prior(b.lengths.size());
  for (size_t t = 0; t < prior.size(); ++t) {
    prior[t] = t % 3 == 0 ? b.lengths[t] - 1 : t % 3 == 1 ? b.lengths[t] / 2 : 0;
  }
  const DeviceTensor prior_lens =
      DeviceTensor::from_host(make_view(prior.data(), DType::kI32, {int64_t(prior.size())}));
  d.p.prior_lens = prior_lens.view();
  d.upload_plan(b);
  decode_attention(d.p, d.workspace.view(), Stream{});
  stream_synchronize(Stream{});
  expect_matches(b, want, d, c.dtype, c.name + " (prior_lens)");

  // Again with the sparse layers' hints (GQA tensor-core shapes: the splits of a run as one
  // thread-block cluster merging in shared memory, of the case's split count when it sets one:
  // clusters of 3 hold fewer threads than a run's outputs). Results never depend on the hints,
  // so every mix must match, range rows and selecting tokens included.
  // And every depth of the SIMT kernel's ring (MHA and head lists on 16-bit caches at head_dim
  // 64 / 128; the others ignore it), reading the lists as positions and then as cache rows
  // (kernels/cache_rows.h; the engine's path on one GPU), resolved from the same lists, block
  // tables and prior_lens as commit_selection would. Only kSparse tokens read rows: every other
  // token's name row 0, which would show. A launch's shape does not depend on the rows, so with
  // them its outputs are the bits it gives with positions.
  const DeviceTensor rows = DeviceTensor::from_host(make_view(
      cache_rows_of(b, prior).data(), DType::kI32, {b.num_tokens, b.max_lists, b.max_budget}));
  std::vector<std::vector<float>> positions_out;  // each (head_lists, ring) launch's out and lse
  for (const bool with_rows : {false, true}) {
    d.p.rows = with_rows ? rows.view() : TensorView{};
    for (const bool head_lists : {false, true}) {
      for (const int ring : {-1, 0, 1, 2}) {
        d.p.lists_only = true;
        d.p.head_lists = head_lists;
        d.p.ring_stages = ring;
        d.upload_plan(b);
        decode_attention(d.p, d.workspace.view(), Stream{});
        stream_synchronize(Stream{});
        const std::string what = c.name +
                                 (head_lists ? " (lists_only, head_lists" : " (lists_only") +
                                 ", ring " + std::to_string(ring) + (with_rows ? ", rows)" : ")");
        expect_matches(b, want, d, c.dtype, what);
        std::vector<float> got = d.out.to_floats();
        const std::vector<float> lse = d.lse.to_floats();
        got.insert(got.end(), lse.begin(), lse.end());
        if (!with_rows) {
          positions_out.push_back(std::move(got));
        } else {
          const std::vector<float>& base = positions_out[size_t(head_lists) * 4 + size_t(ring + 1)];
          EXPECT_EQ(std::memcmp(got.data(), base.data(), got.size() * sizeof(float)), 0)
              << what << ": not the bits of the same launch reading positions";
        }
      }
    }
  }
  d.p.rows = {};
  d.p.ring_stages = -1;
  // The clusters did run where they should: GQA at head_dim 64 / 128 on the tensor-core kernel
  // (16-bit activations), no head lists; of the case's split count, else 8 on FP8 caches only.
  d.p.head_lists = false;
  const bool mma = c.dtype != DType::kF32 &&
                   (c.shape.head_dim == 64 || c.shape.head_dim == 128) &&
                   c.shape.num_heads > c.shape.num_kv_heads;
  const int64_t want_size = !mma || c.num_splits == 1 || c.num_splits > 16 ? 0
                            : c.num_splits > 0                            ? c.num_splits
                            : c.fp8                                       ? 8
                                                                          : 0;
  EXPECT_EQ(decode_attention_cluster_size(d.p), want_size) << c.name;
}

// One captured launch serves every plan: capture with short dense rows, then rewrite the plan
// buffers (lengths, roles, lists) and replay for long mixed rows, and back again.
TEST(DecodeAttentionCudaGraph, ReplayFollowsThePlanInDeviceMemory) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const AttentionShape shape{32, 8, 128, 16};
  AttentionBatch b(shape,
                   {{kSelect, 4100, 0, 0, 0},
                    {kSparse, 4100, 8, 37, 0},
                    {kSparse, 2000, 32, 300, 0},
                    {kDense, 777, 0, 0, 1},
                    {kQuest, 900, 1, 64, 1}},
                   99);
  const std::vector<int32_t> long_lengths = b.lengths;
  const std::vector<uint8_t> long_roles = b.roles;
  // The short plan: every token dense or reselecting over its first few positions.
  auto set_short = [&b] {
    for (size_t t = 0; t < b.lengths.size(); ++t) {
      b.lengths[t] = int32_t(1 + 3 * t);
      b.roles[t] = uint8_t(t % 2 == 0 ? kDense : kReselect);
    }
  };
  Stream stream;
  ASSERT_TRUE(stream_create(&stream).ok());
  // Plain, then as a sparse layer's launch (clusters of splits, a block per head).
  for (const bool hinted : {false, true}) {
    set_short();
    Expected want(b, DType::kBF16);
    OnDevice d(b, want, DType::kBF16, 0);
    d.p.lists_only = d.p.head_lists = hinted;
    Graph::begin_capture(stream);
    decode_attention(d.p, d.workspace.view(), stream);
    const Graph graph = Graph::end_capture(stream);
    for (int round = 0; round < 3; ++round) {
      if (round == 1) {
        b.lengths = long_lengths;
        b.roles = long_roles;
      } else {
        set_short();
      }
      want.compute(b);
      d.upload_plan(b);
      graph.launch(stream);
      stream_synchronize(stream);
      expect_matches(b, want, d, DType::kBF16,
                     std::string(hinted ? "hinted " : "") + "replay " + std::to_string(round));
    }
  }
  stream_destroy(stream);
}

INSTANTIATE_TEST_SUITE_P(Shapes, DecodeAttentionCuda, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace tidal::kernels
