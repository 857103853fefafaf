// SPDX-License-Identifier: Apache-2.0
// cuda::sample_tokens against ref::sample_tokens: greedy exactly (ties included) over named
// vocab sizes; sampled tokens identical for the same seed on the GPU, and equal to the ref's on
// at least 99% of (row, counter) draws over a 128256 vocab with every filter in play (they may
// differ only where f32 exp or sums round differently at a boundary).
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/sample_tokens.h"
#include "runtime/device.h"
#include "tests/kernels/sample_tokens_batch.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

using sample_testing::Rows;
using sample_testing::Setting;
using testing::DeviceTensor;

template <typename T>
DeviceTensor device(int64_t n, DType dtype, const std::vector<T>& v) {
  HostTensor h({n}, dtype);
  std::memcpy(h.view().data, v.data(), v.size() * sizeof(T));
  return DeviceTensor::from_host(h.view());
}

// The device copy of `rows`; counters are re-uploaded per draw.
struct DeviceRows {
  DeviceTensor tokens, logits, temperature, top_k, top_p, min_p, seeds, counters, workspace;
  SampleParams p;

  explicit DeviceRows(Rows& r) {
    logits = DeviceTensor::from_host(make_view(r.logits.data(), DType::kF32, {r.rows, r.stride}));
    temperature = device(r.rows, DType::kF32, r.temperature);
    top_k = device(r.rows, DType::kI32, r.top_k);
    top_p = device(r.rows, DType::kF32, r.top_p);
    min_p = device(r.rows, DType::kF32, r.min_p);
    seeds = device(r.rows, DType::kI64, r.seeds);
    counters = device(r.rows, DType::kI64, r.counters);
    tokens = DeviceTensor::filled({r.rows}, DType::kI32, 0xFF);
    p.tokens = tokens.view();
    p.logits = logits.view();
    p.logits.shape[1] = r.vocab;  // padded rows: the stride stays r.stride
    p.temperature = temperature.view();
    p.top_k = top_k.view();
    p.top_p = top_p.view();
    p.min_p = min_p.view();
    p.seeds = seeds.view();
    p.counters = counters.view();
    const size_t bytes = sample_tokens_workspace_size(p);
    workspace = DeviceTensor::filled({int64_t(std::max<size_t>(bytes, 1))}, DType::kU8, 0x5A);
  }
  std::vector<int32_t> sample(const std::vector<int64_t>& draw_counters) {
    copy_bytes(counters.view().data, counters.view().device, draw_counters.data(), Device{},
               draw_counters.size() * sizeof(int64_t), Stream{});
    sample_tokens(p, workspace.view(), Stream{});
    const HostTensor h = tokens.to_host();
    const int32_t* d = h.view().data_as<int32_t>();
    return std::vector<int32_t>(d, d + h.view().numel());
  }
};

struct VocabCase {
  std::string name;
  int64_t vocab;
};

class SampleTokensCudaGreedy : public ::testing::TestWithParam<VocabCase> {};

TEST_P(SampleTokensCudaGreedy, MatchesRefExactlyWithTies) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const int64_t vocab = GetParam().vocab, rows = 6;
  Rows r(rows, vocab);
  std::mt19937 rng(3);
  for (int64_t i = 0; i < rows; ++i) {
    r.set(i, Setting{0.0f, int32_t(i), 0.5f, 0.1f});  // filters are ignored when greedy
    for (int64_t j = 0; j < vocab; ++j) {
      // Rows 0-2: few levels (many tied maxima); rows 3-5: continuous values.
      r.logits[size_t(i * vocab + j)] = i < 3 ? float(rng() % 4) : float(rng()) * 1e-6f - 2000.0f;
    }
  }
  r.logits[size_t(5 * vocab + vocab - 1)] = 1e9f;  // the top at the very last id
  DeviceRows d(r);
  const std::vector<int32_t> want = r.sample_ref();
  EXPECT_EQ(d.sample(r.counters), want);
}

INSTANTIATE_TEST_SUITE_P(Vocabs, SampleTokensCudaGreedy,
                         ::testing::Values(VocabCase{"v1", 1}, VocabCase{"v7", 7},
                                           VocabCase{"v733", 733}, VocabCase{"v32000", 32000},
                                           VocabCase{"v128256", 128256}),
                         [](const ::testing::TestParamInfo<VocabCase>& info) {
                           return info.param.name;
                         });

TEST(SampleTokensCuda, NonFiniteRowsGetTheMarker) {
  TIDAL_SKIP_WITHOUT_CUDA();
  for (int64_t vocab : {int64_t(733), int64_t(128256)}) {
    Rows r(5, vocab);
    r.logits = testing::to_vector(testing::random_tensor({5, vocab}, 9, 2.0f).view());
    r.logits[size_t(0 * vocab + 3)] = std::nanf("");
    r.logits[size_t(1 * vocab + vocab - 1)] = INFINITY;
    r.logits[size_t(2 * vocab + 0)] = -INFINITY;
    r.logits[size_t(3 * vocab + vocab / 2)] = std::nanf("");
    r.set(0, Setting{0.0f, 0, 1.0f, 0.0f});
    r.set(1, Setting{1.0f, 0, 1.0f, 0.0f});
    r.set(2, Setting{0.7f, 5, 0.9f, 0.05f});
    r.set(3, Setting{1.0f, 0, 0.5f, 0.0f});
    r.set(4, Setting{0.0f, 0, 1.0f, 0.0f});  // greedy: GPU and ref agree exactly
    DeviceRows d(r);
    const std::vector<int32_t> want = r.sample_ref();
    EXPECT_EQ(d.sample(r.counters), want) << "vocab " << vocab;
    for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(want[size_t(i)], kNonFiniteLogits);
  }
}

// Greedy maxima tied across the boundary of two of a row's kCluster chunks (the blocks of one
// row's cluster): the lower id, as the ref, on aligned rows, rows at every 4-byte offset from a
// 16-byte boundary, and padded rows whose padding holds larger values no sampler may read.
// kBlocksARow rows, one boundary each: clusters of 8 on any GPU of 64 SMs or more.
TEST(SampleTokensCuda, GreedyTiesAcrossChunkBoundariesAndPaddedRows) {
  TIDAL_SKIP_WITHOUT_CUDA();
  constexpr int64_t kBlocksARow = 8;  // kernels/sample_tokens.cu: kCluster
  struct Case {
    int64_t vocab, stride;
  };
  for (const Case& c : {Case{128256, 128256}, Case{128255, 128257}, Case{32000, 32003},
                        Case{733, 740}, Case{16, 21}}) {
    // Chunk c of a row covers ids [c * chunk, (c + 1) * chunk), chunk a multiple of 4.
    const int64_t chunk = ((c.vocab + kBlocksARow - 1) / kBlocksARow + 3) & ~int64_t(3);
    const int64_t rows = kBlocksARow;
    Rows r(rows, c.vocab, c.stride);
    std::mt19937 rng(uint32_t(c.vocab));
    std::vector<int32_t> want(static_cast<size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) {
      float* x = r.logits.data() + i * c.stride;
      for (int64_t j = 0; j < c.vocab; ++j) x[j] = float(rng() % 1000) * 1e-3f;
      for (int64_t j = c.vocab; j < c.stride; ++j) x[j] = 1e30f;
      r.set(i, Setting{0.0f, 0, 1.0f, 0.0f});
      const int64_t b = i * chunk;   // row i: a tie across boundary b
      if (b == 0 || b >= c.vocab) {  // no boundary there: the first and the last id tie
        x[0] = x[c.vocab - 1] = 7.0f;
        want[size_t(i)] = 0;
      } else {
        x[b - 1] = x[b] = 7.0f;
        want[size_t(i)] = int32_t(b - 1);
      }
    }
    DeviceRows d(r);
    EXPECT_EQ(d.sample(r.counters), want) << "vocab " << c.vocab << ", stride " << c.stride;
    EXPECT_EQ(r.sample_ref(), want) << "vocab " << c.vocab << ", stride " << c.stride;
  }
}

// More rows than one launch's grid holds (65535 along y): every row, the last ones included, is
// sampled from its own logits with its own settings.
TEST(SampleTokensCuda, RowsPastOneLaunch) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const int64_t rows = 65535 + 70000, vocab = 9;
  Rows r(rows, vocab);
  r.logits = testing::to_vector(testing::random_tensor({rows, vocab}, 21, 3.0f).view());
  for (int64_t i = 0; i < rows; ++i) {
    // Greedy, or top-k 1 at a temperature (the same argmax through the sampling path).
    r.set(i, i % 2 == 0 ? Setting{0.0f, 0, 1.0f, 0.0f} : Setting{0.9f, 1, 1.0f, 0.0f});
    r.seeds[size_t(i)] = i;
  }
  DeviceRows d(r);
  const std::vector<int32_t> got = d.sample(r.counters);
  const std::vector<int32_t> want = r.sample_ref();
  int64_t wrong = 0;
  for (int64_t i = 0; i < rows; ++i) wrong += got[size_t(i)] != want[size_t(i)];
  EXPECT_EQ(wrong, 0) << "rows " << rows;
  EXPECT_EQ(got.back(), want.back());
}

class SampleTokensCudaDraws : public ::testing::TestWithParam<VocabCase> {};

TEST_P(SampleTokensCudaDraws, AgreeWithRefAndRepeatForTheSameSeed) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const int64_t vocab = GetParam().vocab;
  const std::vector<Setting> settings = {{1.0f, 0, 1.0f, 0.0f},    {0.7f, 50, 1.0f, 0.0f},
                                         {1.0f, 0, 0.9f, 0.0f},    {1.3f, 0, 1.0f, 0.05f},
                                         {0.8f, 100, 0.8f, 0.02f}, {1.0f, 1, 1.0f, 0.0f},
                                         {0.6f, 40, 0.95f, 0.1f},  {2.0f, 0, 0.5f, 0.0f}};
  // 8 rows: clusters of 8 blocks a row; 40 rows (more than the SMs hold 8 blocks each of): a
  // block a row.
  for (const int64_t rows : {int64_t(settings.size()), int64_t(5 * settings.size())}) {
    Rows r(rows, vocab);
    const std::vector<float> x =
        testing::to_vector(testing::random_tensor({rows, vocab}, 11, 2.5f).view());
    r.logits = x;
    for (int64_t i = 0; i < rows; ++i) {
      r.set(i, settings[size_t(i) % settings.size()]);
      r.seeds[size_t(i)] = 1000 + 7 * i;
    }
    DeviceRows d(r);
    constexpr int64_t kDraws = 24;
    int64_t agree = 0;
    for (int64_t c = 0; c < kDraws; ++c) {
      std::vector<int64_t> counters(static_cast<size_t>(rows));
      for (int64_t i = 0; i < rows; ++i) counters[size_t(i)] = c * 3 + i;
      r.counters = counters;
      const std::vector<int32_t> want = r.sample_ref();
      const std::vector<int32_t> got = d.sample(counters);
      EXPECT_EQ(d.sample(counters), got) << "the same seed and counter drew another token";
      for (int64_t i = 0; i < rows; ++i) {
        ASSERT_TRUE(got[size_t(i)] >= 0 && got[size_t(i)] < vocab);
        agree += got[size_t(i)] == want[size_t(i)];
      }
    }
    EXPECT_GE(double(agree), 0.99 * double(rows * kDraws)) << agree << " of " << rows * kDraws;
  }
}

INSTANTIATE_TEST_SUITE_P(Vocabs, SampleTokensCudaDraws,
                         ::testing::Values(VocabCase{"v733", 733}, VocabCase{"v32000", 32000},
                                           VocabCase{"v128256", 128256}),
                         [](const ::testing::TestParamInfo<VocabCase>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace tidal::kernels
