// SPDX-License-Identifier: Apache-2.0
// silu_and_mul on the GPU against ref:: on the same (dtype-rounded) inputs, with gate and up as
// separate tensors or as the two column halves of one fused gate_up output.
#include <string>
#include <tuple>

#include "kernels/silu_and_mul.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/sub_views.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

using testing::DeviceTensor;

struct SiluCase {
  const char* name;
  int64_t tokens, inter;
  bool fused;  // gate, up = columns [0, inter) and [inter, 2 inter) of one [tokens, 2 inter]
};

const SiluCase kCases[] = {
    {"one", 1, 1, false},
    {"one_fused", 1, 1, true},
    {"odd_7x37_fused", 7, 37, true},  // up starts 37 elements in: the scalar path
    {"odd_37x733", 37, 733, false},
    {"inter_1002_fused", 3, 1002, true},
    {"llama3_decode_fused", 1, 14336, true},
    {"llama3_batch_16_fused", 16, 14336, true},
    {"llama2_prefill_fused", 100, 11008, true},
};

class SiluAndMulCuda : public ::testing::TestWithParam<std::tuple<SiluCase, DType>> {};

TEST_P(SiluAndMulCuda, MatchesRef) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  // Scale 4 reaches silu's saturated tails (exp(-x) large and tiny) as well as the middle.
  const HostTensor gate_up =
      testing::convert(testing::random_tensor({c.tokens, 2 * c.inter}, 1, 4.0f).view(), dtype);
  const HostTensor gate_sep =
      testing::convert(testing::random_tensor({c.tokens, c.inter}, 2, 4.0f).view(), dtype);
  const HostTensor up_sep =
      testing::convert(testing::random_tensor({c.tokens, c.inter}, 3).view(), dtype);
  const DeviceTensor d_gate_up = DeviceTensor::from_host(gate_up.view());
  const DeviceTensor d_gate_sep = DeviceTensor::from_host(gate_sep.view());
  const DeviceTensor d_up_sep = DeviceTensor::from_host(up_sep.view());

  const TensorView gate = c.fused ? testing::columns(gate_up.view(), 0, c.inter) : gate_sep.view();
  const TensorView up =
      c.fused ? testing::columns(gate_up.view(), c.inter, 2 * c.inter) : up_sep.view();
  const TensorView d_gate =
      c.fused ? testing::columns(d_gate_up.view(), 0, c.inter) : d_gate_sep.view();
  const TensorView d_up =
      c.fused ? testing::columns(d_gate_up.view(), c.inter, 2 * c.inter) : d_up_sep.view();

  HostTensor want({c.tokens, c.inter}, dtype);
  ref::silu_and_mul(want.view(), gate, up);
  DeviceTensor d_out = DeviceTensor::filled({c.tokens, c.inter}, dtype, 0xFF);
  silu_and_mul(d_out.view(), d_gate, d_up, Stream{});
  const testing::Tolerance tol = testing::tolerance(dtype);
  EXPECT_TRUE(
      testing::all_close(d_out.to_floats(), testing::to_vector(want.view()), tol.atol, tol.rtol));
}

INSTANTIATE_TEST_SUITE_P(Shapes, SiluAndMulCuda,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::Values(DType::kF32, DType::kF16,
                                                              DType::kBF16)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  dtype_name(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace tidal::kernels
