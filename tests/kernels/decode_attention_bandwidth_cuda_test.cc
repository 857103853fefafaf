// SPDX-License-Identifier: Apache-2.0
// decode_attention's bandwidth target (DESIGN.md §7): batch 1, head_dim 128, bf16, MHA 32 and
// GQA 32/8 at 32K and 100K tokens must stream K and V at >= 80% of the device's copy bandwidth
// (MHA runs the SIMT split kernel, GQA the tensor-core one; back-to-back calls without an L2
// flush, so less fixed cost per call than kernel_bench's rows: benchmarks/results/PERF_NOTES.md).
// Timing-dependent, so disabled in the suite; run it with
//   kernels_cuda_test --gtest_also_run_disabled_tests --gtest_filter='*Bandwidth*'
#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/decode_attention.h"
#include "runtime/device.h"
#include "tests/testing/device_tensor.h"

namespace tidal::kernels {
namespace {

using testing::DeviceTensor;

constexpr int kWarmup = 3, kIters = 20;

// Device-to-device copy bandwidth, (read + write) bytes per second, over 1 GiB.
double copy_bandwidth(Stream stream) {
  const int64_t bytes = int64_t(1) << 30;
  const DeviceTensor a = DeviceTensor::filled({bytes}, DType::kU8, 1);
  const DeviceTensor b = DeviceTensor::filled({bytes}, DType::kU8, 2);
  Event start, stop;
  for (int i = 0; i < kWarmup; ++i) {
    copy_bytes(b.view().data, b.view().device, a.view().data, a.view().device, size_t(bytes),
               stream);
  }
  start.record(stream);
  for (int i = 0; i < kIters; ++i) {
    copy_bytes(b.view().data, b.view().device, a.view().data, a.view().device, size_t(bytes),
               stream);
  }
  stop.record(stream);
  stop.synchronize();
  return 2.0 * double(bytes) * kIters / (stop.elapsed_ms_since(start) * 1e-3);
}

struct Case {
  std::string name;
  int64_t num_heads, num_kv_heads, n;
};

class DecodeAttentionBandwidth : public ::testing::TestWithParam<Case> {};

TEST_P(DecodeAttentionBandwidth, DISABLED_DenseRowStreamsAtLeast80PercentOfCopy) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const Case& c = GetParam();
  const int64_t head_dim = 128, page_size = 16, pages = (c.n + page_size - 1) / page_size;
  // Pages in shuffled order, as a long-running cache holds them; contents are a harmless
  // constant (0x3C3C: bf16 0.0115): only the time matters here.
  std::vector<int32_t> table(static_cast<size_t>(pages));
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), std::mt19937(3));
  const DeviceTensor kc =
      DeviceTensor::filled({pages, page_size, c.num_kv_heads, head_dim}, DType::kBF16, 0x3C);
  const DeviceTensor vc =
      DeviceTensor::filled({pages, page_size, c.num_kv_heads, head_dim}, DType::kBF16, 0x3C);
  const DeviceTensor q = DeviceTensor::filled({1, c.num_heads, head_dim}, DType::kBF16, 0x3C);
  const DeviceTensor out = DeviceTensor::filled({1, c.num_heads, head_dim}, DType::kBF16, 0);
  const DeviceTensor lse = DeviceTensor::filled({1, c.num_heads}, DType::kF32, 0);
  int32_t seq = 0, len = int32_t(c.n), lists = 0, count = 1, index = 0;
  uint8_t role = uint8_t(TokenRole::kDense);
  const DeviceTensor bt = DeviceTensor::from_host(make_view(table.data(), DType::kI32, {1, pages}));
  const DeviceTensor seq_d = DeviceTensor::from_host(make_view(&seq, DType::kI32, {1}));
  const DeviceTensor len_d = DeviceTensor::from_host(make_view(&len, DType::kI32, {1}));
  const DeviceTensor role_d = DeviceTensor::from_host(make_view(&role, DType::kU8, {1}));
  const DeviceTensor lists_d = DeviceTensor::from_host(make_view(&lists, DType::kI32, {1}));
  const DeviceTensor count_d = DeviceTensor::from_host(make_view(&count, DType::kI32, {1, 1}));
  const DeviceTensor index_d = DeviceTensor::from_host(make_view(&index, DType::kI32, {1, 1, 1}));
  DecodeAttentionParams p;
  p.out = out.view();
  p.q = q.view();
  p.k_cache = kc.view();
  p.v_cache = vc.view();
  p.block_tables = bt.view();
  p.seq_ids = seq_d.view();
  p.lengths = len_d.view();
  p.roles = role_d.view();
  p.indices = index_d.view();
  p.counts = count_d.view();
  p.num_lists = lists_d.view();
  p.lse = lse.view();
  const size_t ws_bytes = std::max<size_t>(decode_attention_workspace_size(p), 1);
  const DeviceTensor ws = DeviceTensor::filled({int64_t(ws_bytes)}, DType::kU8, 0);

  Stream stream;
  ASSERT_TRUE(stream_create(&stream).ok());
  const double copy = copy_bandwidth(stream);
  Event start, stop;
  for (int i = 0; i < kWarmup; ++i) decode_attention(p, ws.view(), stream);
  start.record(stream);
  for (int i = 0; i < kIters; ++i) decode_attention(p, ws.view(), stream);
  stop.record(stream);
  stop.synchronize();
  const double us = stop.elapsed_ms_since(start) * 1e3 / kIters;
  const double kv_bytes = 2.0 * double(c.n) * double(c.num_kv_heads * head_dim) * 2;
  const double achieved = kv_bytes / (us * 1e-6);
  std::printf("%s: %.1f us, K/V %.1f MB, %.0f GB/s = %.1f%% of copy (%.0f GB/s)\n", c.name.c_str(),
              us, kv_bytes / 1e6, achieved / 1e9, 100 * achieved / copy, copy / 1e9);
  EXPECT_GE(achieved, 0.8 * copy) << c.name;
  stream_destroy(stream);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, DecodeAttentionBandwidth,
    ::testing::Values(Case{"mha32_32k", 32, 32, 32768}, Case{"mha32_100k", 32, 32, 100000},
                      Case{"gqa32x8_32k", 32, 8, 32768}, Case{"gqa32x8_100k", 32, 8, 100000}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace tidal::kernels
