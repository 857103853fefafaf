// SPDX-License-Identifier: Apache-2.0
// prefill_attention on the GPU against its ref:: twin: random caches whose pages are shuffled
// (unused pages and the slots past each context hold NaN, so a kernel that reads past a sequence
// shows), poisoned outputs, every float dtype, the tensor-core head_dims (64, 128) and the SIMT
// ones (8, 16, 32). The large case runs the slow ref on a sample of rows only (a one-row params
// view per row) but compares every element of those rows.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/prefill_attention.h"
#include "runtime/device.h"
#include "runtime/tensor_access.h"
#include "tests/kernels/attention_batch.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

struct Seq {
  int32_t queries, context;  // the queries are the last `queries` of `context` positions
};

struct Shape {
  const char* name;
  int64_t heads, kv_heads, dim, page_size;
  std::vector<Seq> seqs;
  std::vector<int64_t> sample_rows;  // empty: compare every row
};

struct Case {
  Shape shape;
  DType dtype;
  bool fp8 = false;  // FP8 e4m3 caches (codes and row scales)
};

// Host inputs of one call (f32, before rounding to the kernel's dtype) and its index arrays.
struct Inputs {
  HostTensor q, k_cache, v_cache;
  std::vector<int32_t> table, starts, seq_ids, context_lens;
  int64_t max_pages = 0, table_rows = 0, max_query_len = 0;
};

Inputs make_inputs(const Shape& s, uint32_t seed) {
  Inputs in;
  const int64_t num_seqs = int64_t(s.seqs.size());
  std::vector<int64_t> need(s.seqs.size());
  int64_t pages = 3;  // spare pages nobody owns (poisoned)
  in.starts.push_back(0);
  for (size_t i = 0; i < s.seqs.size(); ++i) {
    need[i] = (s.seqs[i].context + s.page_size - 1) / s.page_size;
    pages += need[i];
    in.max_pages = std::max(in.max_pages, need[i] + 1);  // one spare column of -1 per row
    in.starts.push_back(in.starts.back() + s.seqs[i].queries);
    in.context_lens.push_back(s.seqs[i].context);
    in.max_query_len = std::max<int64_t>(in.max_query_len, s.seqs[i].queries);
  }
  std::vector<int32_t> ids(size_t(pages), 0);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(seed));
  // Sequence i uses block-table row num_seqs - i; row 0 stays unused (-1).
  in.table_rows = num_seqs + 1;
  in.table.assign(size_t(in.table_rows * in.max_pages), -1);
  std::vector<bool> used(size_t(pages), false);
  size_t next = 0;
  for (int64_t i = 0; i < num_seqs; ++i) {
    in.seq_ids.push_back(int32_t(num_seqs - i));
    for (int64_t j = 0; j < need[size_t(i)]; ++j) {
      used[size_t(ids[next])] = true;
      in.table[size_t((num_seqs - i) * in.max_pages + j)] = ids[next++];
    }
  }
  in.q = testing::random_tensor({in.starts.back(), s.heads, s.dim}, seed + 1, 1.5f);
  in.k_cache = testing::random_tensor({pages, s.page_size, s.kv_heads, s.dim}, seed + 2);
  in.v_cache = testing::random_tensor({pages, s.page_size, s.kv_heads, s.dim}, seed + 3);
  // NaN wherever no sequence's context reaches: unowned pages and each last page's tail.
  auto poison = [&](int64_t page, int64_t slot) {
    for (int64_t h = 0; h < s.kv_heads; ++h) {
      for (int64_t d = 0; d < s.dim; ++d) {
        set_f32(in.k_cache.view(), page, slot, h, d, NAN);
        set_f32(in.v_cache.view(), page, slot, h, d, NAN);
      }
    }
  };
  for (int64_t page = 0; page < pages; ++page) {
    if (used[size_t(page)]) continue;
    for (int64_t slot = 0; slot < s.page_size; ++slot) poison(page, slot);
  }
  for (int64_t i = 0; i < num_seqs; ++i) {
    const int32_t context = in.context_lens[size_t(i)];
    const int32_t last = in.table[size_t((num_seqs - i) * in.max_pages + need[size_t(i)] - 1)];
    for (int64_t pos = context; pos < need[size_t(i)] * s.page_size; ++pos) {
      poison(last, pos % s.page_size);
    }
  }
  return in;
}

TensorView ints(std::vector<int32_t>& v, std::initializer_list<int64_t> shape) {
  return make_view(v.data(), DType::kI32, shape);
}

class PrefillAttentionCuda : public ::testing::TestWithParam<Case> {};

TEST_P(PrefillAttentionCuda, MatchesReference) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const Shape& s = GetParam().shape;
  const DType dtype = GetParam().dtype;
  Inputs in = make_inputs(s, 7);
  const int64_t tokens = in.starts.back(), num_seqs = int64_t(s.seqs.size());
  const int64_t row_elems = s.heads * s.dim;

  // The kernel's inputs rounded to its dtype: what both sides compute on.
  // FP8: those values quantized as paged_kv_append does (poisoned rows become NaN codes).
  const HostTensor q = testing::convert(in.q.view(), dtype);
  HostTensor kc = testing::convert(in.k_cache.view(), dtype);
  HostTensor vc = testing::convert(in.v_cache.view(), dtype);
  HostTensor ks, vs;
  PrefillAttentionParams host;
  if (GetParam().fp8) {
    testing_attention::Fp8Cache kf(testing::convert(kc.view(), DType::kF32));
    testing_attention::Fp8Cache vf(testing::convert(vc.view(), DType::kF32));
    kc = std::move(kf.codes);
    vc = std::move(vf.codes);
    ks = std::move(kf.scale);
    vs = std::move(vf.scale);
    host.k_scale = ks.view();
    host.v_scale = vs.view();
  }
  host.q = q.view();
  host.k_cache = kc.view();
  host.v_cache = vc.view();
  host.block_tables = ints(in.table, {in.table_rows, in.max_pages});
  host.query_starts = ints(in.starts, {num_seqs + 1});
  host.seq_ids = ints(in.seq_ids, {num_seqs});
  host.context_lens = ints(in.context_lens, {num_seqs});
  host.max_query_len = in.max_query_len;

  using testing::DeviceTensor;
  const DeviceTensor dq = DeviceTensor::from_host(q.view()),
                     dk = DeviceTensor::from_host(kc.view());
  const DeviceTensor dv = DeviceTensor::from_host(vc.view());
  DeviceTensor dks, dvs;
  const DeviceTensor dt = DeviceTensor::from_host(host.block_tables);
  const DeviceTensor dstarts = DeviceTensor::from_host(host.query_starts);
  const DeviceTensor dseq = DeviceTensor::from_host(host.seq_ids);
  const DeviceTensor dctx = DeviceTensor::from_host(host.context_lens);
  const DeviceTensor dout = DeviceTensor::filled({tokens, s.heads, s.dim}, dtype, 0xFF);
  PrefillAttentionParams dev = host;
  dev.out = dout.view();
  dev.q = dq.view();
  dev.k_cache = dk.view();
  dev.v_cache = dv.view();
  if (GetParam().fp8) {
    dks = DeviceTensor::from_host(ks.view());
    dvs = DeviceTensor::from_host(vs.view());
    dev.k_scale = dks.view();
    dev.v_scale = dvs.view();
  }
  dev.block_tables = dt.view();
  dev.query_starts = dstarts.view();
  dev.seq_ids = dseq.view();
  dev.context_lens = dctx.view();
  prefill_attention(dev, Stream{});
  const std::vector<float> got = dout.to_floats();
  const testing::Tolerance tol = testing::tolerance(dtype);

  if (s.sample_rows.empty()) {
    HostTensor want({tokens, s.heads, s.dim}, DType::kF32);
    host.out = want.view();
    ref::prefill_attention(host);
    EXPECT_TRUE(testing::all_close(got, testing::to_vector(want.view()), tol.atol, tol.rtol));
    return;
  }
  // Sampled rows: every output must still be written and finite.
  EXPECT_TRUE(std::all_of(got.begin(), got.end(), [](float x) { return std::isfinite(x); }));
  for (int64_t r : s.sample_rows) {
    const int64_t i =
        std::upper_bound(in.starts.begin(), in.starts.end(), int32_t(r)) - in.starts.begin() - 1;
    // Row r alone: a one-query sequence whose context ends at r's position.
    std::vector<int32_t> starts1 = {0, 1}, seq1 = {in.seq_ids[size_t(i)]};
    std::vector<int32_t> ctx1 = {in.context_lens[size_t(i)] -
                                 (in.starts[size_t(i) + 1] - int32_t(r)) + 1};
    HostTensor want({1, s.heads, s.dim}, DType::kF32);
    PrefillAttentionParams one = host;
    one.out = want.view();
    one.q = q.view().slice(r, r + 1);
    one.query_starts = ints(starts1, {2});
    one.seq_ids = ints(seq1, {1});
    one.context_lens = ints(ctx1, {1});
    one.max_query_len = 1;
    ref::prefill_attention(one);
    const std::vector<float> row(got.begin() + r * row_elems, got.begin() + (r + 1) * row_elems);
    EXPECT_TRUE(testing::all_close(row, testing::to_vector(want.view()), tol.atol, tol.rtol))
        << "row " << r;
  }
}

std::vector<Case> cases() {
  const std::vector<Shape> shapes = {
      // One sequence, whole prompt, query counts around the 64-key tile and 128-row block.
      {"q1_hd128_32q8kv", 32, 8, 128, 16, {{1, 1}}, {}},
      {"q7_hd64_4q1kv", 4, 1, 64, 16, {{7, 7}}, {}},
      {"q64_hd128_8q2kv", 8, 2, 128, 16, {{64, 64}}, {}},
      {"q65_hd64_4q1kv_page7", 4, 1, 64, 7, {{65, 65}}, {}},
      {"q300_hd128_4q1kv", 4, 1, 128, 16, {{300, 300}}, {}},
      // A chunk continuing a cached context, and three sequences of different lengths at once.
      {"chunk129_after1000_hd64", 4, 1, 64, 16, {{129, 1129}}, {}},
      {"three_seqs_hd128_8q2kv", 8, 2, 128, 16, {{5, 40}, {130, 130}, {33, 290}}, {}},
      // GQA groups that do not divide the 128-row block (3) and a large one (8); MHA; Llama-3.
      {"group3_hd64_6q2kv", 6, 2, 64, 16, {{45, 60}}, {}},
      {"group8_hd128_8q1kv", 8, 1, 128, 16, {{33, 80}}, {}},
      {"mha_hd128_32q32kv_page64", 32, 32, 128, 64, {{70, 90}}, {}},
      {"llama3_hd128_32q8kv", 32, 8, 128, 16, {{48, 200}}, {}},
      // SIMT head_dims: stories260K (8q/4kv, head_dim 8) and 16, 32.
      {"hd8_8q4kv", 8, 4, 8, 16, {{37, 100}, {3, 20}}, {}},
      {"hd16_4q2kv_page8", 4, 2, 16, 8, {{20, 50}}, {}},
      {"hd32_4q2kv", 4, 2, 32, 16, {{40, 90}}, {}},
      // 2048 queries after 2048 cached positions: sampled rows at block and tile edges.
      {"q2048_after2048_hd128_8q2kv",
       8,
       2,
       128,
       16,
       {{2048, 4096}},
       {0, 1, 31, 32, 63, 64, 127, 128, 1000, 1023, 1024, 2046, 2047}},
  };
  std::vector<Case> out;
  for (const Shape& s : shapes) {
    for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) out.push_back({s, dtype});
  }
  // FP8 caches: the tensor-core kernel (16-bit, head_dim 64 / 128: tiles dequantized into shared
  // memory) and the SIMT one (f32, head_dim 8).
  for (const Shape& s : shapes) {
    const std::string name = s.name;
    if (name == "q7_hd64_4q1kv" || name == "chunk129_after1000_hd64" ||
        name == "three_seqs_hd128_8q2kv" || name == "hd8_8q4kv" || name == "llama3_hd128_32q8kv" ||
        name == "q65_hd64_4q1kv_page7" || name == "q300_hd128_4q1kv" ||
        name == "q2048_after2048_hd128_8q2kv") {
      out.push_back({s, DType::kBF16, true});
      out.push_back({s, name == "q65_hd64_4q1kv_page7" ? DType::kF16 : DType::kF32, true});
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Shapes, PrefillAttentionCuda, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.shape.name) + "_" +
                                  dtype_name(info.param.dtype) + (info.param.fp8 ? "_fp8" : "");
                         });

// The production shape at full size: a 32K-token Llama-3-8B prompt in one chunk (32 query heads,
// 8 KV heads, head_dim 128, bf16). Constant q, k and v (byte fills, no host data) make every
// score of a row equal, so each output is exactly v (bf16 0x4040 = 3): every row must be written
// and finite. Prints the attention TFLOP/s (4 * n^2 / 2 * head_dim * heads, causal).
TEST(PrefillAttentionCudaPerf, Llama3Prefill32kTokens) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const int64_t n = 32768, heads = 32, kv_heads = 8, dim = 128, page = 16, pages = n / page;
  using testing::DeviceTensor;
  const DeviceTensor q = DeviceTensor::filled({n, heads, dim}, DType::kBF16, 0x3C);
  const DeviceTensor k = DeviceTensor::filled({pages, page, kv_heads, dim}, DType::kBF16, 0x3C);
  const DeviceTensor v = DeviceTensor::filled({pages, page, kv_heads, dim}, DType::kBF16, 0x40);
  const DeviceTensor out = DeviceTensor::filled({n, heads, dim}, DType::kBF16, 0xFF);
  std::vector<int32_t> table(static_cast<size_t>(pages));
  std::vector<int32_t> starts = {0, int32_t(n)}, seq = {0}, ctx = {int32_t(n)};
  std::iota(table.begin(), table.end(), 0);
  std::reverse(table.begin(), table.end());  // pages in reverse order
  const DeviceTensor dt = DeviceTensor::from_host(ints(table, {1, pages}));
  const DeviceTensor ds = DeviceTensor::from_host(ints(starts, {2}));
  const DeviceTensor dseq = DeviceTensor::from_host(ints(seq, {1}));
  const DeviceTensor dctx = DeviceTensor::from_host(ints(ctx, {1}));
  PrefillAttentionParams p;
  p.out = out.view();
  p.q = q.view();
  p.k_cache = k.view();
  p.v_cache = v.view();
  p.block_tables = dt.view();
  p.query_starts = ds.view();
  p.seq_ids = dseq.view();
  p.context_lens = dctx.view();
  p.max_query_len = n;
  prefill_attention(p, Stream{});  // warm-up
  stream_synchronize(Stream{});
  const int reps = 3;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) prefill_attention(p, Stream{});
  stream_synchronize(Stream{});
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double flops = 4.0 * double(n) * double(n) / 2 * double(dim) * double(heads);
  std::printf("prefill_attention 32K Llama-3-8B bf16: %.2f ms, %.1f TFLOP/s\n", 1e3 * s / reps,
              flops * reps / s / 1e12);
  const std::vector<float> got = out.to_floats();
  const testing::Tolerance tol = testing::tolerance(DType::kBF16);
  EXPECT_TRUE(testing::all_close(got, std::vector<float>(got.size(), 3.0f), tol.atol, tol.rtol));
}

}  // namespace
}  // namespace tidal::kernels
