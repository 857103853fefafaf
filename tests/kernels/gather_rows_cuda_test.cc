// SPDX-License-Identifier: Apache-2.0
// gather_rows and embedding_lookup on the GPU (one row-gather kernel) against ref::: exact copies,
// with dense, strided and misaligned source rows (16-, 4- and 2-byte word paths).
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/embedding_lookup.h"
#include "kernels/fill_random.h"
#include "kernels/gather_rows.h"
#include "runtime/device.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/sub_views.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

using testing::DeviceTensor;

struct GatherCase {
  const char* name;
  int64_t num_in, cols, num_rows;
  int64_t col_offset;  // the source is columns [col_offset, col_offset + cols) of wider rows
  int64_t pad;         // extra columns after them
};

const GatherCase kCases[] = {
    {"one", 1, 1, 1, 0, 0},
    {"odd_733x37", 733, 37, 7, 0, 0},
    {"strided_37", 37, 37, 37, 0, 5},
    {"misaligned_1002", 50, 1002, 9, 1, 2},  // starts 1 element in: 2- or 4-byte words
    {"hidden_5120", 100, 5120, 37, 0, 0},
    {"llama_rows_of_prefill", 1000, 4096, 64, 0, 8},
};

// Row indices in [0, num_in), always including the first and the last row.
std::vector<int32_t> random_rows(int64_t n, int64_t num_in, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> rows(static_cast<size_t>(n));
  for (auto& r : rows) r = int32_t(rng() % uint32_t(num_in));
  rows[0] = int32_t(num_in - 1);
  if (n > 1) rows[1] = 0;
  return rows;
}

class GatherRowsCuda : public ::testing::TestWithParam<std::tuple<GatherCase, DType>> {};

TEST_P(GatherRowsCuda, GatherRowsMatchesRef) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  const int64_t width = c.col_offset + c.cols + c.pad;
  const HostTensor in =
      testing::convert(testing::random_tensor({c.num_in, width}, 1).view(), dtype);
  std::vector<int32_t> rows = random_rows(c.num_rows, c.num_in, 2);
  const TensorView h_rows = make_view(rows.data(), DType::kI32, {c.num_rows});
  HostTensor want({c.num_rows, c.cols}, dtype);
  ref::gather_rows(want.view(), testing::columns(in.view(), c.col_offset, c.col_offset + c.cols),
                   h_rows);

  const DeviceTensor d_in = DeviceTensor::from_host(in.view());
  const DeviceTensor d_rows = DeviceTensor::from_host(h_rows);
  DeviceTensor d_out = DeviceTensor::filled({c.num_rows, c.cols}, dtype, 0xFF);
  gather_rows(d_out.view(), testing::columns(d_in.view(), c.col_offset, c.col_offset + c.cols),
              d_rows.view(), Stream{});
  EXPECT_TRUE(testing::all_close(d_out.to_floats(), testing::to_vector(want.view()), 0, 0));
}

TEST_P(GatherRowsCuda, EmbeddingLookupMatchesRef) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  const int64_t width = c.col_offset + c.cols + c.pad;
  const HostTensor table =
      testing::convert(testing::random_tensor({c.num_in, width}, 3).view(), dtype);
  std::vector<int32_t> ids = random_rows(c.num_rows, c.num_in, 4);
  const TensorView h_ids = make_view(ids.data(), DType::kI32, {c.num_rows});
  HostTensor want({c.num_rows, c.cols}, dtype);
  ref::embedding_lookup(want.view(),
                        testing::columns(table.view(), c.col_offset, c.col_offset + c.cols), h_ids);

  const DeviceTensor d_table = DeviceTensor::from_host(table.view());
  const DeviceTensor d_ids = DeviceTensor::from_host(h_ids);
  DeviceTensor d_out = DeviceTensor::filled({c.num_rows, c.cols}, dtype, 0xFF);
  embedding_lookup(d_out.view(),
                   testing::columns(d_table.view(), c.col_offset, c.col_offset + c.cols),
                   d_ids.view(), Stream{});
  EXPECT_TRUE(testing::all_close(d_out.to_floats(), testing::to_vector(want.view()), 0, 0));
}

INSTANTIATE_TEST_SUITE_P(Shapes, GatherRowsCuda,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::Values(DType::kF32, DType::kF16,
                                                              DType::kBF16)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  dtype_name(std::get<1>(info.param));
                         });

// The Llama-3 table itself (128256 x 4096 bf16, made on the GPU): every looked-up row equals the
// table row read back directly.
TEST(EmbeddingLookupCuda, Llama3VocabBf16) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const int64_t vocab = 128256, hidden = 4096, tokens = 64;
  DeviceTensor d_table({vocab, hidden}, DType::kBF16);
  fill_random(d_table.view(), 17, 0.0f, 0.02f, Stream{});
  std::vector<int32_t> ids = random_rows(tokens, vocab, 5);
  const DeviceTensor d_ids = DeviceTensor::from_host(make_view(ids.data(), DType::kI32, {tokens}));
  DeviceTensor d_out = DeviceTensor::filled({tokens, hidden}, DType::kBF16, 0xFF);
  embedding_lookup(d_out.view(), d_table.view(), d_ids.view(), Stream{});
  const std::vector<float> got = d_out.to_floats();
  HostTensor row({hidden}, DType::kBF16);
  for (int64_t t = 0; t < tokens; ++t) {
    copy_view(row.view(), d_table.view().select(ids[size_t(t)]), Stream{});
    stream_synchronize(Stream{});
    const std::vector<float> want = testing::to_vector(row.view());
    ASSERT_TRUE(testing::all_close(
        std::vector<float>(got.begin() + t * hidden, got.begin() + (t + 1) * hidden), want, 0, 0))
        << "token " << t << " id " << ids[size_t(t)];
  }
}

}  // namespace
}  // namespace tidal::kernels
