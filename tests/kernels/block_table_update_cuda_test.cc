// SPDX-License-Identifier: Apache-2.0
// block_table_update on the GPU against ref:: (exact): random tables, update lists with unused
// (row -1) slots, distinct (row, index) targets.
#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "kernels/block_table_update.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

using testing::DeviceTensor;

struct TableCase {
  const char* name;
  int64_t num_rows, max_pages, max_updates;
};

const TableCase kCases[] = {
    {"one", 1, 1, 1},
    {"odd_7x37", 7, 37, 37},
    {"batch_64", 64, 733, 1000},
    {"long_context_64x8192", 64, 8192, 4096},  // 131K tokens a sequence at 16-token pages
};

class BlockTableUpdateCuda : public ::testing::TestWithParam<TableCase> {};

TEST_P(BlockTableUpdateCuda, MatchesRef) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const TableCase& c = GetParam();
  std::mt19937 rng(1);
  HostTensor table({c.num_rows, c.max_pages}, DType::kI32);
  int32_t* t = table.view().data_as<int32_t>();
  for (int64_t i = 0; i < c.num_rows * c.max_pages; ++i) t[i] = int32_t(rng() % 100000);
  // Distinct targets (a random sample of slots); every third entry unused.
  std::vector<int64_t> slots(size_t(c.num_rows * c.max_pages));
  for (size_t i = 0; i < slots.size(); ++i) slots[i] = int64_t(i);
  std::shuffle(slots.begin(), slots.end(), rng);
  HostTensor updates({c.max_updates, 3}, DType::kI32);
  int32_t* u = updates.view().data_as<int32_t>();
  for (int64_t i = 0; i < c.max_updates; ++i) {
    const int64_t slot = slots[size_t(i) % slots.size()];
    const bool unused = i % 3 == 2 || int64_t(i) >= int64_t(slots.size());
    u[3 * i] = unused ? -1 : int32_t(slot / c.max_pages);
    u[3 * i + 1] = unused ? int32_t(rng() % 1000000) : int32_t(slot % c.max_pages);
    u[3 * i + 2] = int32_t(rng() % 100000);
  }
  DeviceTensor d_table = DeviceTensor::from_host(table.view());
  const DeviceTensor d_updates = DeviceTensor::from_host(updates.view());
  ref::block_table_update(table.view(), updates.view());
  block_table_update(d_table.view(), d_updates.view(), Stream{});
  const HostTensor got = d_table.to_host();
  const int32_t* g = got.view().data_as<int32_t>();
  EXPECT_TRUE(std::equal(t, t + c.num_rows * c.max_pages, g));
}

INSTANTIATE_TEST_SUITE_P(Shapes, BlockTableUpdateCuda, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace tidal::kernels
