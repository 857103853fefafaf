// SPDX-License-Identifier: Apache-2.0
#include "kernels/rms_norm.h"

#include <cmath>

#include "kernels/residual_add.h"
#include "runtime/tensor_access.h"
#include "tests/testing/device_tensor.h"
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

TEST(FusedAddRmsNormRef, KnownValues) {
  // residual {1, 2} + delta {2, 2} = {3, 4} (rms sqrt(12.5)); row 2: {0, -1} + {1, 0} = {1, -1}.
  HostTensor residual = HostTensor::from({2, 2}, {1.0f, 2.0f, 0.0f, -1.0f});
  const HostTensor delta = HostTensor::from({2, 2}, {2.0f, 2.0f, 1.0f, 0.0f});
  const HostTensor w = HostTensor::from({2}, {1.0f, 2.0f});
  HostTensor y({2, 2}, DType::kF32);
  fused_add_rms_norm(y.view(), residual.view(), delta.view(), w.view(), /*eps=*/0.0f, Stream{});
  EXPECT_TRUE(testing::all_close(testing::to_vector(residual.view()), {3, 4, 1, -1}, 0, 0));
  EXPECT_NEAR(y.at(0), 3.0f / std::sqrt(12.5f), 1e-6f);
  EXPECT_NEAR(y.at(1), 2 * 4.0f / std::sqrt(12.5f), 1e-6f);
  EXPECT_NEAR(y.at(2), 1.0f, 1e-6f);
  EXPECT_NEAR(y.at(3), -2.0f, 1e-6f);
}

TEST(FusedAddRmsNormRef, EqualsResidualAddThenRmsNorm) {
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    const HostTensor r0 = testing::random_tensor({3, 37}, 11);
    HostTensor fused_res = testing::convert(r0.view(), dtype);
    HostTensor split_res = testing::convert(r0.view(), dtype);
    const HostTensor delta = testing::convert(testing::random_tensor({3, 37}, 12).view(), dtype);
    const HostTensor w = testing::convert(testing::random_tensor({37}, 13).view(), dtype);
    HostTensor fused_out({3, 37}, dtype), split_out({3, 37}, dtype);
    fused_add_rms_norm(fused_out.view(), fused_res.view(), delta.view(), w.view(), 1e-5f, Stream{});
    residual_add(split_res.view(), split_res.view(), delta.view(), Stream{});
    rms_norm(split_out.view(), split_res.view(), w.view(), 1e-5f, Stream{});
    EXPECT_TRUE(testing::all_close(testing::to_vector(fused_res.view()),
                                   testing::to_vector(split_res.view()), 0, 0))
        << dtype_name(dtype);
    EXPECT_TRUE(testing::all_close(testing::to_vector(fused_out.view()),
                                   testing::to_vector(split_out.view()), 0, 0))
        << dtype_name(dtype);
  }
}

TEST(FusedAddRmsNormRef, ResidualIsStoredInItsDtype) {
  // 1 + 2^-9 is not a bf16: the stored residual rounds back to 1, and the norm reads that.
  HostTensor residual({1, 2}, DType::kBF16);
  HostTensor delta({1, 2}, DType::kBF16);
  const HostTensor w = testing::convert(HostTensor::from({2}, {1.0f, 1.0f}).view(), DType::kBF16);
  set_f32(residual.view(), 0, 0, 1.0f);
  set_f32(residual.view(), 0, 1, 1.0f);
  set_f32(delta.view(), 0, 0, 1.0f / 512);
  set_f32(delta.view(), 0, 1, 0.0f);
  HostTensor y({1, 2}, DType::kBF16);
  fused_add_rms_norm(y.view(), residual.view(), delta.view(), w.view(), 0.0f, Stream{});
  EXPECT_EQ(residual.at(0), 1.0f);
  EXPECT_EQ(y.at(0), 1.0f);
  EXPECT_EQ(y.at(1), 1.0f);
}

// A row-parallel projection's partial sums reduced in f32 (model/parallel_forward.h): the f32
// delta gives exactly what its copy rounded to the residual's dtype gives.
TEST(FusedAddRmsNormRef, AnF32DeltaEqualsItsRoundedCopy) {
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    const HostTensor r0 = testing::convert(testing::random_tensor({3, 37}, 21, 4.0f).view(), dtype);
    HostTensor res_f32 = testing::convert(r0.view(), dtype);
    HostTensor res_rounded = testing::convert(r0.view(), dtype);
    const HostTensor delta = testing::random_tensor({3, 37}, 22);  // f32, not representable
    const HostTensor rounded = testing::convert(delta.view(), dtype);
    const HostTensor w = testing::convert(testing::random_tensor({37}, 23).view(), dtype);
    HostTensor out_f32({3, 37}, dtype), out_rounded({3, 37}, dtype);
    fused_add_rms_norm(out_f32.view(), res_f32.view(), delta.view(), w.view(), 1e-5f, Stream{});
    fused_add_rms_norm(out_rounded.view(), res_rounded.view(), rounded.view(), w.view(), 1e-5f,
                       Stream{});
    EXPECT_EQ(testing::to_vector(res_f32.view()), testing::to_vector(res_rounded.view()))
        << dtype_name(dtype);
    EXPECT_EQ(testing::to_vector(out_f32.view()), testing::to_vector(out_rounded.view()))
        << dtype_name(dtype);
  }
}

TEST(RmsNormRef, RowStrideAndRoundingBeforeTheWeight) {
  // Row 1 of a [2, 3] buffer viewed as [2, 2]: {2, 2} has rms 2, so the normed value is 1; the
  // row stride skips the 99s.
  const HostTensor buffer = HostTensor::from({2, 3}, {3, 4, 99, 2, 2, 99});
  TensorView x = buffer.view();
  x.shape[1] = 2;
  const HostTensor w = HostTensor::from({2}, {0.5f, -3.0f});
  HostTensor y({2, 2}, DType::kF32);
  rms_norm(y.view(), x, w.view(), 0.0f, Stream{});
  EXPECT_NEAR(y.at(0), 0.5f * 3.0f / std::sqrt(12.5f), 1e-6f);
  EXPECT_EQ(y.at(2), 0.5f);
  EXPECT_EQ(y.at(3), -3.0f);
}

}  // namespace
}  // namespace tidal::kernels
