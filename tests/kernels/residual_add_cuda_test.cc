// SPDX-License-Identifier: Apache-2.0
// residual_add on the GPU against ref:: on the same (dtype-rounded) inputs: out-of-place, in place
// (out aliasing a, as the forward uses it) and on misaligned buffers (the scalar path).
#include <string>
#include <tuple>

#include "kernels/residual_add.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/sub_views.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

using testing::DeviceTensor;

struct AddCase {
  const char* name;
  int64_t tokens, hidden;
};

const AddCase kCases[] = {
    {"one", 1, 1},
    {"odd_7x37", 7, 37},
    {"odd_1x733", 1, 733},
    {"hidden_5120", 37, 5120},
    {"llama_64x4096", 64, 4096},
    {"prefill_1002x4096", 1002, 4096},
};

class ResidualAddCuda : public ::testing::TestWithParam<std::tuple<AddCase, DType>> {};

TEST_P(ResidualAddCuda, MatchesRef) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  const HostTensor a =
      testing::convert(testing::random_tensor({c.tokens, c.hidden}, 1).view(), dtype);
  const HostTensor b =
      testing::convert(testing::random_tensor({c.tokens, c.hidden}, 2).view(), dtype);
  HostTensor want({c.tokens, c.hidden}, dtype);
  ref::residual_add(want.view(), a.view(), b.view());
  const testing::Tolerance tol = testing::tolerance(dtype);

  DeviceTensor d_a = DeviceTensor::from_host(a.view());
  const DeviceTensor d_b = DeviceTensor::from_host(b.view());
  DeviceTensor d_out = DeviceTensor::filled({c.tokens, c.hidden}, dtype, 0xFF);
  residual_add(d_out.view(), d_a.view(), d_b.view(), Stream{});
  EXPECT_TRUE(
      testing::all_close(d_out.to_floats(), testing::to_vector(want.view()), tol.atol, tol.rtol))
      << "out of place";

  residual_add(d_a.view(), d_a.view(), d_b.view(), Stream{});  // in place
  EXPECT_TRUE(
      testing::all_close(d_a.to_floats(), testing::to_vector(want.view()), tol.atol, tol.rtol))
      << "in place";
}

TEST_P(ResidualAddCuda, MisalignedBuffers) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  const int64_t n = c.tokens * c.hidden;
  const HostTensor a = testing::convert(testing::random_tensor({n + 1}, 3).view(), dtype);
  const HostTensor b = testing::convert(testing::random_tensor({n + 1}, 4).view(), dtype);
  HostTensor want({c.tokens, c.hidden}, dtype);
  ref::residual_add(want.view(), testing::offset_view(a.view(), 1, {c.tokens, c.hidden}),
                    testing::offset_view(b.view(), 1, {c.tokens, c.hidden}));

  const DeviceTensor d_a = DeviceTensor::from_host(a.view());
  const DeviceTensor d_b = DeviceTensor::from_host(b.view());
  DeviceTensor d_out = DeviceTensor::filled({n + 1}, dtype, 0xFF);
  residual_add(testing::offset_view(d_out.view(), 1, {c.tokens, c.hidden}),
               testing::offset_view(d_a.view(), 1, {c.tokens, c.hidden}),
               testing::offset_view(d_b.view(), 1, {c.tokens, c.hidden}), Stream{});
  std::vector<float> got = d_out.to_floats();
  got.erase(got.begin());  // element 0 is outside the view and stays poisoned
  const testing::Tolerance tol = testing::tolerance(dtype);
  EXPECT_TRUE(testing::all_close(got, testing::to_vector(want.view()), tol.atol, tol.rtol));
}

// An f32 addend (the f32 all-reduce of a row-parallel projection's partial sums) is rounded to
// out's dtype first: bit for bit what its rounded copy gives, on the vector and scalar paths.
TEST_P(ResidualAddCuda, F32AddendEqualsItsRoundedCopy) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  if (dtype == DType::kF32) GTEST_SKIP() << "an f32 addend under f32 is the plain case";
  const int64_t n = c.tokens * c.hidden;
  const HostTensor a = testing::convert(testing::random_tensor({n + 1}, 5, 4.0f).view(), dtype);
  const HostTensor b = testing::random_tensor({n + 1}, 6);  // f32
  const HostTensor rounded = testing::convert(b.view(), dtype);
  const DeviceTensor d_a = DeviceTensor::from_host(a.view());
  const DeviceTensor d_b = DeviceTensor::from_host(b.view());
  const DeviceTensor d_rounded = DeviceTensor::from_host(rounded.view());
  for (int64_t offset : {0, 1}) {  // aligned, then misaligned (the scalar path)
    DeviceTensor got = DeviceTensor::filled({c.tokens, c.hidden}, dtype, 0xFF);
    DeviceTensor want = DeviceTensor::filled({c.tokens, c.hidden}, dtype, 0xFF);
    const TensorView av = testing::offset_view(d_a.view(), offset, {c.tokens, c.hidden});
    residual_add(got.view(), av, testing::offset_view(d_b.view(), offset, {c.tokens, c.hidden}),
                 Stream{});
    residual_add(want.view(), av,
                 testing::offset_view(d_rounded.view(), offset, {c.tokens, c.hidden}), Stream{});
    EXPECT_EQ(got.to_floats(), want.to_floats()) << "offset " << offset;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ResidualAddCuda,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::Values(DType::kF32, DType::kF16,
                                                              DType::kBF16)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  dtype_name(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace tidal::kernels
