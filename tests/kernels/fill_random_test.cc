// SPDX-License-Identifier: Apache-2.0
#include "kernels/fill_random.h"

#include <cmath>
#include <vector>

#include "kernels/counter_rng.h"
#include "runtime/tensor_access.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

std::vector<float> fill(int64_t n, uint64_t seed, float mean, float std,
                        DType dtype = DType::kF32) {
  HostTensor t({n}, dtype);
  fill_random(t.view(), seed, mean, std, Stream{});
  return testing::to_vector(t.view());
}

TEST(FillRandomRef, DeterministicPerSeed) {
  EXPECT_EQ(fill(1000, 7, 0, 1), fill(1000, 7, 0, 1));
  const std::vector<float> a = fill(1000, 7, 0, 1), b = fill(1000, 8, 0, 1);
  int same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  EXPECT_LT(same, 5);
}

TEST(FillRandomRef, ElementDependsOnlyOnSeedAndIndex) {
  // The GPU's grid-stride loop relies on it: element i is the same in any tensor size.
  const std::vector<float> small = fill(10, 3, 0, 1), large = fill(1001, 3, 0, 1);
  EXPECT_EQ(small, std::vector<float>(large.begin(), large.begin() + 10));
  // Element 0 from the Box-Muller formula over draws 0 and 1.
  const double u1 = 1.0 - random_uniform(3, 0), u2 = random_uniform(3, 1);
  EXPECT_EQ(small[0], float(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2)));
}

TEST(FillRandomRef, MeanAndStdOf100kSamples) {
  const std::vector<float> x = fill(100000, 42, 0.5f, 2.0f);
  double sum = 0, sum_sq = 0;
  for (float v : x) sum += v;
  const double mean = sum / double(x.size());
  for (float v : x) sum_sq += (v - mean) * (v - mean);
  const double std = std::sqrt(sum_sq / double(x.size() - 1));
  // Standard errors: 2 / sqrt(1e5) = 0.0063 for the mean, 2 / sqrt(2e5) = 0.0045 for the std.
  EXPECT_NEAR(mean, 0.5, 0.03);
  EXPECT_NEAR(std, 2.0, 0.025);
}

TEST(FillRandomRef, StdZeroGivesTheConstant) {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (float v : fill(333, 1, 0.25f, 0.0f, dtype)) EXPECT_EQ(v, 0.25f) << dtype_name(dtype);
  }
}

TEST(FillRandomRef, SixteenBitIsTheF32ValueRounded) {
  const std::vector<float> f32 = fill(500, 9, -1.0f, 0.02f);
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    const std::vector<float> x = fill(500, 9, -1.0f, 0.02f, dtype);
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(x[i], round_to(dtype, f32[i])) << i;
  }
}

}  // namespace
}  // namespace tidal::kernels
