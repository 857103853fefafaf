// SPDX-License-Identifier: Apache-2.0
// The GPU test harness itself: device discovery, and a round trip through device memory in every
// float dtype (the conversion every GPU-vs-reference test relies on).
#include <cmath>

#include "runtime/device.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/testing.h"

namespace tidal {
namespace {

TEST(CudaHarness, DeviceInfoIsSane) {
  TIDAL_SKIP_WITHOUT_CUDA();
  DeviceInfo info;
  ASSERT_TRUE(cuda_device_info(0, &info).ok());
  EXPECT_GT(info.sm_count, 0);
  EXPECT_GT(info.total_bytes, info.free_bytes / 2);
  EXPECT_FALSE(info.name.empty());
}

TEST(CudaHarness, RoundTripEveryFloatDtype) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const HostTensor x = testing::random_tensor({7, 37}, 1);
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    const testing::DeviceTensor d = testing::DeviceTensor::from_host(x.view(), dtype);
    const HostTensor rounded = testing::convert(x.view(), dtype);
    EXPECT_TRUE(testing::all_close(d.to_floats(), testing::to_vector(rounded.view()), 0, 0))
        << dtype_name(dtype);
  }
}

TEST(CudaHarness, PoisonedTensorsReadAsNan) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const testing::DeviceTensor d = testing::DeviceTensor::filled({4}, DType::kF32, 0xFF);
  for (float v : d.to_floats()) EXPECT_TRUE(std::isnan(v));
}

}  // namespace
}  // namespace tidal
