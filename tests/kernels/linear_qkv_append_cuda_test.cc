// SPDX-License-Identifier: Apache-2.0
// linear_qkv_append (the QKV GEMV whose epilogue applies RoPE and appends k and v to the paged
// cache) against linear_split then paged_kv_append with RoPE on the same device, byte for byte:
// q, k, v and both caches. Both paths round each projection to the dtype and rotate with one
// formula (kernels/rotary.cuh), so nothing may differ. Shapes: every token tile (1, 2, 3 as 4,
// 5 as 8, 8), MHA and GQA, head_dim 16 to 128 (a pair block's pairs span a whole half-head at
// head_dim 16), the scalar path (padded activation rows), Llama-3-8B's projection, FP8 caches
// (whose heads' blocks meet through counters to quantize each row whole: a head of 16 to 1 blocks);
// and the shapes the fused launch refuses (9 tokens, (head_dim / 2) % 8 != 0, an FP8 cache without
// counters), which take the pair. The counters are zero again after every launch.
// Tokens sit in different sequences at scattered positions of shuffled pages.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/fill_random.h"
#include "kernels/linear.h"
#include "kernels/paged_kv_append.h"
#include "runtime/device.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/sub_views.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

using testing::DeviceTensor;

struct QkvCase {
  const char* name;
  int64_t tokens, in_features, heads, kv_heads, head_dim;
  int64_t pad;  // extra columns in the activation rows (row stride in_features + pad)
  bool fp8;       // an FP8 cache
  bool counters;  // append_counters given (FP8: the one launch needs them)
  bool fused;     // the one-launch path takes it
};

const QkvCase kCases[] = {
    {"m1_mha_d64", 1, 256, 4, 4, 64, 0, false, false, true},
    {"m1_gqa_d128", 1, 512, 8, 2, 128, 0, false, false, true},
    {"m2_gqa_d128", 2, 512, 8, 2, 128, 0, false, false, true},
    {"m3_d32", 3, 320, 6, 2, 32, 0, false, false, true},
    {"m5_d16_scalar", 5, 200, 2, 1, 16, 3, false, false, true},  // row stride 203: one element a load
    {"m8_mha_d64", 8, 1024, 8, 8, 64, 0, false, false, true},
    {"llama3_8b_m1", 1, 4096, 32, 8, 128, 0, false, false, true},
    {"m9_prefill", 9, 256, 4, 2, 64, 0, false, false, false},
    {"m1_d24_odd_half", 1, 128, 2, 1, 24, 0, false, false, false},
    {"m2_fp8_no_counters", 2, 256, 4, 2, 64, 0, true, false, false},
    // FP8 caches in one launch: 16 blocks a head (1 token, d128), 8 (2 tokens, d64: tiles of 2
    // rows a warp), 2 (4 tokens, d32: 4 rows a warp), 1 (8 tokens, d16, scalar loads).
    {"m1_gqa_d128_fp8", 1, 512, 8, 2, 128, 0, true, true, true},
    {"m2_gqa_d64_fp8", 2, 256, 4, 2, 64, 0, true, true, true},
    {"m3_d32_fp8", 3, 320, 6, 2, 32, 0, true, true, true},
    {"m5_d16_scalar_fp8", 5, 200, 2, 1, 16, 3, true, true, true},
    {"m8_mha_d64_fp8", 8, 1024, 8, 8, 64, 0, true, true, true},
    {"llama3_8b_m1_fp8", 1, 4096, 32, 8, 128, 0, true, true, true},
    {"m9_prefill_fp8", 9, 256, 4, 2, 64, 0, true, true, false},
};

const QkvCase& case_named(const std::string& name) {
  for (const QkvCase& c : kCases) {
    if (name == c.name) return c;
  }
  TIDAL_CHECK(false, "no QKV case " + name);
  return kCases[0];
}

constexpr int64_t kPageSize = 16, kMaxPages = 16;

struct QkvInputs {
  DeviceTensor in, weight, block_tables, seq_ids, positions, inv_freq;
  DeviceTensor k_cache0, v_cache0, k_scale0, v_scale0;  // the history both runs start from
};

template <typename V>
DeviceTensor to_device(std::vector<int64_t> shape, DType dtype, const std::vector<V>& values) {
  HostTensor h(shape, dtype);
  std::memcpy(h.view().data, values.data(), values.size() * sizeof(V));
  return DeviceTensor::from_host(h.view());
}

DeviceTensor random_device(std::vector<int64_t> shape, DType dtype, uint64_t seed, float std) {
  DeviceTensor t(shape, dtype);
  fill_random(t.view(), seed, 0.0f, std, Stream{});
  return t;
}

QkvInputs make_setup(const QkvCase& c, DType dtype) {
  QkvInputs s;
  const int64_t k = c.in_features, rows = (c.heads + 2 * c.kv_heads) * c.head_dim;
  s.in = random_device({c.tokens, k + c.pad}, dtype, 31, 1.0f);
  s.weight = random_device({rows, k}, dtype, 32, 1.0f / std::sqrt(float(k)));
  // Token t is sequence row t; each row owns kMaxPages shuffled pages; positions scattered.
  std::mt19937 rng(11);
  std::vector<int32_t> pages(size_t(c.tokens * kMaxPages)), seqs, positions;
  std::iota(pages.begin(), pages.end(), 0);
  std::shuffle(pages.begin(), pages.end(), rng);
  for (int64_t t = 0; t < c.tokens; ++t) {
    seqs.push_back(int32_t(t));
    positions.push_back(int32_t((37 + 53 * t) % (kMaxPages * kPageSize)));
  }
  s.block_tables = to_device({c.tokens, kMaxPages}, DType::kI32, pages);
  s.seq_ids = to_device({c.tokens}, DType::kI32, seqs);
  s.positions = to_device({c.tokens}, DType::kI32, positions);
  std::vector<float> freq;
  for (int64_t i = 0; i < c.head_dim / 2; ++i) {
    freq.push_back(float(1.0 / std::pow(500000.0, double(2 * i) / double(c.head_dim))));
  }
  s.inv_freq = to_device({c.head_dim / 2}, DType::kF32, freq);
  const std::vector<int64_t> cache_shape = {c.tokens * kMaxPages, kPageSize, c.kv_heads,
                                            c.head_dim};
  if (c.fp8) {
    const DeviceTensor k_src = random_device(cache_shape, DType::kF32, 33, 1.0f);
    const DeviceTensor v_src = random_device(cache_shape, DType::kF32, 34, 1.0f);
    for (auto [src, codes, scales] : {std::tuple{&k_src, &s.k_cache0, &s.k_scale0},
                                      std::tuple{&v_src, &s.v_cache0, &s.v_scale0}}) {
      const HostTensor h = src->to_host();
      HostTensor code_h(cache_shape, DType::kU8);
      HostTensor scale_h({c.tokens * kMaxPages, c.kv_heads, kPageSize}, DType::kF32);
      quantize_kv_cache(h.view(), code_h.view(), scale_h.view());
      *codes = DeviceTensor::from_host(code_h.view());
      *scales = DeviceTensor::from_host(scale_h.view());
    }
  } else {
    s.k_cache0 = random_device(cache_shape, dtype, 33, 1.0f);
    s.v_cache0 = random_device(cache_shape, dtype, 34, 1.0f);
  }
  return s;
}

// One run's outputs and caches.
struct QkvOutputs {
  DeviceTensor q, k, v, k_cache, v_cache, k_scale, v_scale;
  DeviceTensor counters;  // append_counters (FP8 cases that give them), zero
};

DeviceTensor copy_of(const DeviceTensor& t) {
  if (t.view().data == nullptr) return DeviceTensor();
  return DeviceTensor::from_host(t.to_host().view());
}

QkvOutputs make_run(const QkvCase& c, DType dtype, const QkvInputs& s) {
  QkvOutputs r;
  r.q = DeviceTensor::filled({c.tokens, c.heads, c.head_dim}, dtype, 0xFF);
  r.k = DeviceTensor::filled({c.tokens, c.kv_heads, c.head_dim}, dtype, 0xFF);
  r.v = DeviceTensor::filled({c.tokens, c.kv_heads, c.head_dim}, dtype, 0xFF);
  r.k_cache = copy_of(s.k_cache0);
  r.v_cache = copy_of(s.v_cache0);
  r.k_scale = copy_of(s.k_scale0);
  r.v_scale = copy_of(s.v_scale0);
  if (c.counters) r.counters = DeviceTensor::filled({c.tokens, c.kv_heads, 2}, DType::kI32, 0);
  return r;
}

PagedKvAppendParams params(const QkvInputs& s, QkvOutputs& r) {
  return {r.k_cache.view(), r.v_cache.view(),   s.block_tables.view(),
          s.seq_ids.view(), s.positions.view(), r.k.view(),
          r.v.view(),       r.k_scale.view(),   r.v_scale.view(),
          r.q.view(),       s.inv_freq.view(),  r.counters.view()};
}

// The counters are left zero (or were never given).
bool counters_zero(const QkvOutputs& r) {
  if (r.counters.view().data == nullptr) return true;
  const HostTensor h = r.counters.to_host();
  const int32_t* c = h.view().data_as<int32_t>();
  return std::all_of(c, c + h.view().numel(), [](int32_t v) { return v == 0; });
}

TensorView flat(TensorView t) {
  return make_view(t.data, t.dtype, {t.size(0), t.size(1) * t.size(2)}, t.device);
}

std::vector<uint8_t> bytes_of(const DeviceTensor& t) {
  if (t.view().data == nullptr) return {};
  const HostTensor h = t.to_host();
  const uint8_t* p = static_cast<const uint8_t*>(h.view().data);
  return std::vector<uint8_t>(p, p + h.view().nbytes());
}

std::vector<uint8_t> bytes_of(const QkvOutputs& r) {
  std::vector<uint8_t> out;
  for (const DeviceTensor* t : {&r.q, &r.k, &r.v, &r.k_cache, &r.v_cache, &r.k_scale, &r.v_scale}) {
    const std::vector<uint8_t> b = bytes_of(*t);
    out.insert(out.end(), b.begin(), b.end());
  }
  return out;
}

// The outputs whose bytes differ, by name ("" when none do).
std::string differing(const QkvOutputs& got, const QkvOutputs& want) {
  const std::pair<const char*, const DeviceTensor QkvOutputs::*> outs[] = {
      {"q", &QkvOutputs::q},
      {"k", &QkvOutputs::k},
      {"v", &QkvOutputs::v},
      {"k_cache", &QkvOutputs::k_cache},
      {"v_cache", &QkvOutputs::v_cache},
      {"k_scale", &QkvOutputs::k_scale},
      {"v_scale", &QkvOutputs::v_scale}};
  std::string names;
  for (const auto& [name, member] : outs) {
    if (bytes_of(got.*member) != bytes_of(want.*member)) {
      names += names.empty() ? name : std::string(" ") + name;
    }
  }
  return names;
}

class LinearQkvAppendCuda : public ::testing::TestWithParam<std::tuple<QkvCase, DType>> {};

TEST_P(LinearQkvAppendCuda, EqualsLinearSplitThenRopeAppend) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  const QkvInputs s = make_setup(c, dtype);
  const TensorView x = testing::columns(s.in.view(), 0, c.in_features);

  QkvOutputs want = make_run(c, dtype, s);
  const PagedKvAppendParams pw = params(s, want);
  linear_split(flat(pw.rope_q), flat(pw.k), flat(pw.v), x, s.weight.view(), Stream{});
  paged_kv_append(pw, Stream{});

  // The plan read after the GEMV's wait, then before it (plan_complete: the inputs are host
  // copies made before the launch): the same bytes.
  const std::vector<uint8_t> w = bytes_of(want);
  QkvOutputs got;
  for (const bool early : {false, true}) {
    got = make_run(c, dtype, s);
    PagedKvAppendParams pg = params(s, got);
    pg.plan_complete = early;
    // The decode shapes must take the one launch (the cuda:: launcher says whether it did); the
    // others, through the public op, the pair.
#if TIDAL_WITH_CUDA
    EXPECT_EQ(cuda::linear_qkv_append(pg, x, s.weight.view(), Stream{}), c.fused) << c.name;
#endif
    if (!c.fused) linear_qkv_append(pg, x, s.weight.view(), Stream{});
    stream_synchronize(Stream{});
    const std::vector<uint8_t> g = bytes_of(got);
    ASSERT_EQ(g.size(), w.size());
    EXPECT_TRUE(g == w) << c.name << " early=" << early << ": " << differing(got, want)
                        << " differ";
    EXPECT_TRUE(counters_zero(got)) << c.name << " early=" << early;
  }
  // Every output was written (no poison left) and q was rotated (differs from the plain sums).
  for (float f : got.q.to_floats()) ASSERT_TRUE(std::isfinite(f)) << c.name;
  for (float f : got.k.to_floats()) ASSERT_TRUE(std::isfinite(f)) << c.name;
  for (float f : got.v.to_floats()) ASSERT_TRUE(std::isfinite(f)) << c.name;
  DeviceTensor plain_q = DeviceTensor::filled({c.tokens, c.heads, c.head_dim}, dtype, 0xFF);
  DeviceTensor plain_k = DeviceTensor::filled({c.tokens, c.kv_heads, c.head_dim}, dtype, 0xFF);
  DeviceTensor plain_v = DeviceTensor::filled({c.tokens, c.kv_heads, c.head_dim}, dtype, 0xFF);
  linear_split(flat(plain_q.view()), flat(plain_k.view()), flat(plain_v.view()), x, s.weight.view(),
               Stream{});
  EXPECT_NE(plain_q.to_floats(), got.q.to_floats()) << c.name;
}

INSTANTIATE_TEST_SUITE_P(Shapes, LinearQkvAppendCuda,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::Values(DType::kF32, DType::kF16,
                                                              DType::kBF16)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  dtype_name(std::get<1>(info.param));
                         });

// In a CUDA graph, replayed: the same bytes as the eager pair, each replay appending again into
// the restored cache (an FP8 cache too: each replay finds its counters zero again).
class LinearQkvAppendCudaGraph : public ::testing::TestWithParam<QkvCase> {};

TEST_P(LinearQkvAppendCudaGraph, ReplayMatchesEagerPair) {
  TIDAL_SKIP_WITHOUT_CUDA();
  Stream stream;
  ASSERT_TRUE(stream_create(&stream).ok());
  const QkvCase& c = GetParam();
  const DType dtype = DType::kBF16;
  const QkvInputs s = make_setup(c, dtype);
  const TensorView x = s.in.view();
  QkvOutputs want = make_run(c, dtype, s);
  const PagedKvAppendParams pw = params(s, want);
  linear_split(flat(pw.rope_q), flat(pw.k), flat(pw.v), x, s.weight.view(), stream);
  paged_kv_append(pw, stream);
  stream_synchronize(stream);
  const std::vector<uint8_t> w = bytes_of(want);

  QkvOutputs got = make_run(c, dtype, s);
  PagedKvAppendParams pg = params(s, got);
  pg.plan_complete = true;  // the plan was copied before the capture; the graph rewrites no part
  Graph::begin_capture(stream);
  copy_view(got.k_cache.view(), s.k_cache0.view(), stream);
  copy_view(got.v_cache.view(), s.v_cache0.view(), stream);
  if (c.fp8) {
    copy_view(got.k_scale.view(), s.k_scale0.view(), stream);
    copy_view(got.v_scale.view(), s.v_scale0.view(), stream);
  }
  linear_qkv_append(pg, x, s.weight.view(), stream);
  const Graph graph = Graph::end_capture(stream);
  ASSERT_TRUE(graph.valid());
  for (int rep = 0; rep < 3; ++rep) {
    graph.launch(stream);
    stream_synchronize(stream);
    EXPECT_TRUE(bytes_of(got) == w) << c.name << ": replay " << rep;
    EXPECT_TRUE(counters_zero(got)) << c.name << ": replay " << rep;
  }
  stream_destroy(stream);
}

INSTANTIATE_TEST_SUITE_P(Caches, LinearQkvAppendCudaGraph,
                         ::testing::Values(case_named("m2_gqa_d128"),
                                           case_named("m2_gqa_d64_fp8")),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace tidal::kernels
