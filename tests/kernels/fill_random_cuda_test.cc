// SPDX-License-Identifier: Apache-2.0
// fill_random on the GPU against ref::: the same counter-based stream, so the same values (to the
// last bit in practice; compared with the dtype's tolerance since device log/cos may differ from
// the host's by an ulp of double). Plus the misaligned (scalar) path, the constant case, and
// indices past 2^31 in a 4 GB tensor.
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/counter_rng.h"
#include "kernels/fill_random.h"
#include "runtime/device.h"
#include "runtime/tensor_access.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/sub_views.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

using testing::DeviceTensor;

struct FillCase {
  const char* name;
  std::vector<int64_t> shape;
  uint64_t seed;
  float mean, stddev;
};

const FillCase kCases[] = {
    {"one", {1}, 1, 0.0f, 1.0f},
    {"odd_7x37", {7, 37}, 2, 0.5f, 2.0f},
    {"odd_733", {733}, 3, -1.0f, 0.02f},
    {"weights_1002x1001", {1002, 1001}, 4, 0.0f, 0.02f},
    {"llama_weight_4096x512", {4096, 512}, 5, 0.0f, 1.0f / 64},
};

class FillRandomCuda : public ::testing::TestWithParam<std::tuple<FillCase, DType>> {};

TEST_P(FillRandomCuda, MatchesRef) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  HostTensor want(c.shape, dtype);
  ref::fill_random(want.view(), c.seed, c.mean, c.stddev);
  DeviceTensor d = DeviceTensor::filled(c.shape, dtype, 0xFF);
  fill_random(d.view(), c.seed, c.mean, c.stddev, Stream{});
  const testing::Tolerance tol = testing::tolerance(dtype);
  EXPECT_TRUE(
      testing::all_close(d.to_floats(), testing::to_vector(want.view()), tol.atol, tol.rtol));
}

TEST_P(FillRandomCuda, MisalignedViewMatchesRef) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  int64_t n = 1;
  for (int64_t s : c.shape) n *= s;
  HostTensor want({n}, dtype);
  ref::fill_random(want.view(), c.seed, c.mean, c.stddev);
  DeviceTensor d = DeviceTensor::filled({n + 1}, dtype, 0xFF);
  fill_random(testing::offset_view(d.view(), 1, {n}), c.seed, c.mean, c.stddev, Stream{});
  std::vector<float> got = d.to_floats();
  EXPECT_TRUE(std::isnan(got[0]));  // outside the view: untouched
  got.erase(got.begin());
  const testing::Tolerance tol = testing::tolerance(dtype);
  EXPECT_TRUE(testing::all_close(got, testing::to_vector(want.view()), tol.atol, tol.rtol));
}

TEST_P(FillRandomCuda, StdZeroIsTheConstant) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  DeviceTensor d = DeviceTensor::filled(c.shape, dtype, 0xFF);
  fill_random(d.view(), c.seed, 0.75f, 0.0f, Stream{});
  for (float v : d.to_floats()) ASSERT_EQ(v, 0.75f);
}

INSTANTIATE_TEST_SUITE_P(Shapes, FillRandomCuda,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::Values(DType::kF32, DType::kF16,
                                                              DType::kBF16)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  dtype_name(std::get<1>(info.param));
                         });

// 2^31 + 4099 bf16 elements (4.3 GB): the last 4099 must be ref::fill_random's elements at those
// indices (its formula, evaluated here for the indices alone; FillRandomRef pins the formula).
TEST(FillRandomCudaLarge, IndicesBeyond2To31) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const int64_t tail = 4099, n = (int64_t(1) << 31) + tail;
  const uint64_t seed = 99;
  DeviceTensor d({n}, DType::kBF16);
  fill_random(d.view(), seed, 0.0f, 1.0f, Stream{});
  HostTensor got({tail}, DType::kBF16);
  copy_bytes(got.view().data, Device{}, static_cast<uint8_t*>(d.view().data) + (n - tail) * 2,
             d.view().device, size_t(tail) * 2, Stream{});
  stream_synchronize(Stream{});
  std::vector<float> want(static_cast<size_t>(tail));
  for (int64_t j = 0; j < tail; ++j) {
    const uint64_t i = uint64_t(n - tail + j);
    const double u1 = 1.0 - random_uniform(seed, 2 * i), u2 = random_uniform(seed, 2 * i + 1);
    const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
    want[size_t(j)] = round_to(DType::kBF16, float(z));
  }
  const testing::Tolerance tol = testing::tolerance(DType::kBF16);
  EXPECT_TRUE(testing::all_close(testing::to_vector(got.view()), want, tol.atol, tol.rtol));
}

}  // namespace
}  // namespace tidal::kernels
