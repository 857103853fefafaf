// SPDX-License-Identifier: Apache-2.0
// The vocabulary-parallel ops on the GPU against ref:: over named shapes: every float dtype for
// the lookup (ids inside and outside the shard), shard argmax over rows with ties and -inf, and
// the merge of several ranks' pairs. Exact: the ops only move and compare values.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/vocab_shard.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

struct Case {
  std::string name;
  int64_t rows, shard, hidden, ranks;
  DType dtype;
};

class VocabShardCuda : public ::testing::TestWithParam<Case> {};

template <typename T>
std::vector<T> host_of(const testing::DeviceTensor& d) {
  const HostTensor h = d.to_host();
  const T* p = h.view().data_as<T>();
  return std::vector<T>(p, p + h.view().numel());
}

TEST_P(VocabShardCuda, MatchesReference) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const Case& c = GetParam();
  std::mt19937 rng(uint32_t(c.rows + c.shard));
  const int64_t begin = c.shard * (c.ranks / 2);  // a middle shard
  // Lookup: ids over the whole vocabulary, about 1 in `ranks` inside the shard.
  std::vector<int32_t> ids;
  for (int64_t t = 0; t < c.rows; ++t) ids.push_back(int32_t(rng() % uint32_t(c.shard * c.ranks)));
  const HostTensor table32 = testing::random_tensor({c.shard, c.hidden}, 3, 1.0f);
  const HostTensor table = testing::convert(table32.view(), c.dtype);
  HostTensor want({c.rows, c.hidden}, c.dtype);
  ref::embedding_lookup_shard(want.view(), table.view(),
                              make_view(ids.data(), DType::kI32, {c.rows}), begin);
  const auto d_table = testing::DeviceTensor::from_host(table.view());
  const auto d_ids = testing::DeviceTensor::from_host(make_view(ids.data(), DType::kI32, {c.rows}));
  const auto d_out = testing::DeviceTensor::filled({c.rows, c.hidden}, c.dtype, 0xFF);
  embedding_lookup_shard(d_out.view(), d_table.view(), d_ids.view(), begin, Stream{});

  // Argmax: logits rounded to a few values so ties are common; one row all -inf.
  std::vector<float> logits(size_t(c.rows * c.shard));
  for (float& v : logits) v = float(int(rng() % 9)) * 0.5f;
  for (int64_t j = 0; j < c.shard; ++j) logits[size_t(j)] = -INFINITY;
  std::vector<int32_t> pairs(size_t(2 * c.rows));
  ref::argmax_shard(make_view(pairs.data(), DType::kI32, {c.rows, 2}),
                    make_view(logits.data(), DType::kF32, {c.rows, c.shard}), begin);
  const auto d_logits =
      testing::DeviceTensor::from_host(make_view(logits.data(), DType::kF32, {c.rows, c.shard}));
  const auto d_pairs = testing::DeviceTensor::filled({c.rows, 2}, DType::kI32, 0xFF);
  argmax_shard(d_pairs.view(), d_logits.view(), begin, Stream{});

  // Merge: `ranks` shards' pairs (random values from few levels, ascending id ranges).
  std::vector<int32_t> all(size_t(c.ranks * c.rows * 2));
  for (int64_t r = 0; r < c.ranks; ++r) {
    for (int64_t i = 0; i < c.rows; ++i) {
      const float v = float(int(rng() % 4));
      std::memcpy(&all[size_t(2 * (r * c.rows + i))], &v, 4);
      all[size_t(2 * (r * c.rows + i) + 1)] =
          int32_t(r * c.shard + int64_t(rng() % uint32_t(c.shard)));
    }
  }
  std::vector<int32_t> tokens(static_cast<size_t>(c.rows));
  ref::argmax_merge(make_view(tokens.data(), DType::kI32, {c.rows}),
                    make_view(all.data(), DType::kI32, {c.ranks, c.rows, 2}));
  const auto d_all =
      testing::DeviceTensor::from_host(make_view(all.data(), DType::kI32, {c.ranks, c.rows, 2}));
  const auto d_tokens = testing::DeviceTensor::filled({c.rows}, DType::kI32, 0xFF);
  argmax_merge(d_tokens.view(), d_all.view(), Stream{});
  stream_synchronize(Stream{});

  EXPECT_EQ(d_out.to_floats(), testing::to_vector(want.view()));
  EXPECT_EQ(host_of<int32_t>(d_pairs), pairs);
  EXPECT_EQ(host_of<int32_t>(d_tokens), tokens);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, VocabShardCuda,
    ::testing::Values(Case{"one_row", 1, 1, 8, 2, DType::kF32},
                      Case{"odd_7_rows_bf16", 7, 37, 733, 3, DType::kBF16},
                      Case{"llama3_tp8_f16", 16, 16032, 4096, 8, DType::kF16},
                      Case{"llama2_tp2_bf16", 3, 16000, 4096, 2, DType::kBF16}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace tidal::kernels
