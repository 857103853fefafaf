// SPDX-License-Identifier: Apache-2.0
#include "kernels/silu_and_mul.h"

#include <cmath>

#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

TEST(SiluAndMulRef, KnownValues) {
  const HostTensor gate = HostTensor::from({1, 3}, {0.0f, 1.0f, -2.0f});
  const HostTensor up = HostTensor::from({1, 3}, {5.0f, 2.0f, 3.0f});
  HostTensor out({1, 3}, DType::kF32);
  silu_and_mul(out.view(), gate.view(), up.view(), Stream{});
  EXPECT_EQ(out.at(0), 0.0f);
  EXPECT_NEAR(out.at(1), 2.0f * (1.0f / (1.0f + std::exp(-1.0f))), 1e-6f);  // 1.4621172
  EXPECT_NEAR(out.at(2), 3.0f * (-2.0f / (1.0f + std::exp(2.0f))), 1e-6f);  // -0.7153876
}

}  // namespace
}  // namespace tidal::kernels
