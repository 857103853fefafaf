// SPDX-License-Identifier: Apache-2.0
#include "kernels/rms_norm.h"

#include <cmath>

#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

TEST(RmsNormRef, KnownValues) {
  const HostTensor x = HostTensor::from({2, 2}, {3.0f, 4.0f, 1.0f, -1.0f});  // rms sqrt(12.5), 1
  const HostTensor w = HostTensor::from({2}, {1.0f, 2.0f});
  HostTensor y({2, 2}, DType::kF32);
  rms_norm(y.view(), x.view(), w.view(), /*eps=*/0.0f, Stream{});
  EXPECT_NEAR(y.at(0), 3.0f / std::sqrt(12.5f), 1e-6f);
  EXPECT_NEAR(y.at(1), 2 * 4.0f / std::sqrt(12.5f), 1e-6f);
  EXPECT_NEAR(y.at(2), 1.0f, 1e-6f);
  EXPECT_NEAR(y.at(3), -2.0f, 1e-6f);
}

TEST(RmsNormRef, EpsIsInsideTheRoot) {
  const HostTensor x = HostTensor::from({1, 1}, {0.0f});
  const HostTensor w = HostTensor::from({1}, {1.0f});
  HostTensor y({1, 1}, DType::kF32);
  rms_norm(y.view(), x.view(), w.view(), 0.25f, Stream{});
  EXPECT_EQ(y.at(0), 0.0f);
  const HostTensor x2 = HostTensor::from({1, 1}, {1.0f});
  rms_norm(y.view(), x2.view(), w.view(), 3.0f, Stream{});  // 1 / sqrt(1 + 3)
  EXPECT_NEAR(y.at(0), 0.5f, 1e-7f);
}

}  // namespace
}  // namespace tidal::kernels
