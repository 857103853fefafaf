// SPDX-License-Identifier: Apache-2.0
// `tidal bench --kernel-trace`'s recorder on a GPU: CUPTI turned on before a graph is captured
// records every kernel of its replays, in start order, with the launch's grid and block, as
// graph nodes; records outside the window asked for are dropped. Skips where no GPU is visible.
#include <string>
#include <vector>

#include "kernels/fill_random.h"
#include "launch/kernel_trace.h"
#include "runtime/device.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/testing.h"

namespace tidal::launch {
namespace {

TEST(KernelTraceCuda, RecordsEveryKernelOfAGraphsReplays) {
  TIDAL_SKIP_WITHOUT_CUDA();
  ASSERT_TRUE(KernelTrace::begin().ok());
  testing::DeviceTensor a = testing::DeviceTensor::filled({1 << 20}, DType::kF32, 0);
  testing::DeviceTensor b = testing::DeviceTensor::filled({1 << 16}, DType::kF32, 0);
  Stream s;
  ASSERT_TRUE(stream_create(&s).ok());
  kernels::fill_random(a.view(), 1, 0.0f, 1.0f, s);  // before the window: dropped
  Graph::begin_capture(s);
  kernels::fill_random(a.view(), 2, 0.0f, 1.0f, s);
  kernels::fill_random(b.view(), 3, 0.0f, 1.0f, s);
  Graph g = Graph::end_capture(s);
  stream_synchronize(s);
  ASSERT_TRUE(KernelTrace::take(0, 0, nullptr).ok());
  const uint64_t from = KernelTrace::now_ns();
  constexpr int kReplays = 4;
  for (int i = 0; i < kReplays; ++i) g.launch(s);
  stream_synchronize(s);
  std::vector<KernelRecord> r;
  ASSERT_TRUE(KernelTrace::take(from, KernelTrace::now_ns(), &r).ok());
  ASSERT_EQ(r.size(), size_t(2 * kReplays));
  for (size_t i = 0; i < r.size(); ++i) {
    EXPECT_NE(r[i].name.find("fill_random"), std::string::npos) << r[i].name;
    EXPECT_GT(r[i].end_ns, r[i].start_ns);
    EXPECT_GE(r[i].start_ns, from);
    EXPECT_NE(r[i].graph_node, 0u) << "a graph node";
    EXPECT_GT(r[i].grid[0], 0);
    EXPECT_GT(r[i].block[0], 0);
    if (i > 0) {
      EXPECT_GE(r[i].start_ns, r[i - 1].start_ns) << "in start order";
    }
  }
  // The larger fill first in each replay: more blocks.
  EXPECT_GT(r[0].grid[0], r[1].grid[0]);
  const KernelTraceSummary sum = summarize_kernels(r, kReplays);
  EXPECT_DOUBLE_EQ(sum.kernels, 2.0);
  EXPECT_GT(sum.covered_us, 0.0);
  EXPECT_LE(sum.covered_us, sum.window_us + 1e-9);
  KernelTrace::end();
  stream_destroy(s);
}

}  // namespace
}  // namespace tidal::launch
