// SPDX-License-Identifier: Apache-2.0
// `tidal bench --kernel-trace`'s host side: the summary of a window of kernel records (running
// time as the union of the kernels' intervals, idle time, overlap, groups by name), the Chrome
// trace it writes, and kernel names. CUPTI's records themselves come only on a GPU.
#include "launch/kernel_trace.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace tidal::launch {
namespace {

KernelRecord rec(const std::string& name, uint64_t start_ns, uint64_t end_ns,
                 uint32_t smem_config = 0) {
  KernelRecord r;
  r.name = name;
  r.start_ns = start_ns;
  r.end_ns = end_ns;
  r.smem_config = smem_config;
  return r;
}

TEST(KernelTrace, SummaryCountsRunningIdleAndOverlappingTime) {
  // Two replays of: gemv [0, 10) us, attention [8, 30) (overlapping gemv by 2), a gap of 5,
  // merge [35, 40). Then the same 100 us later.
  std::vector<KernelRecord> r;
  for (uint64_t base : {uint64_t(1000000), uint64_t(1100000)}) {
    r.push_back(rec("gemv", base, base + 10000, 32768));
    r.push_back(rec("attention", base + 8000, base + 30000, 233472));
    r.push_back(rec("merge", base + 35000, base + 40000, 32768));
  }
  const KernelTraceSummary s = summarize_kernels(r, 2);
  EXPECT_DOUBLE_EQ(s.window_us, 140.0 / 2);  // 1000000 .. 1140000 ns
  EXPECT_DOUBLE_EQ(s.kernels, 3.0);
  EXPECT_DOUBLE_EQ(s.covered_us, 35.0);  // [0, 30) and [35, 40) each replay
  EXPECT_DOUBLE_EQ(s.idle_us, 70.0 - 35.0);
  EXPECT_DOUBLE_EQ(s.overlap_us, 2.0);  // 37 us of durations over 35 of running time
  ASSERT_EQ(s.groups.size(), 3u);
  EXPECT_EQ(s.groups[0].name, "attention");  // the largest busy time first
  EXPECT_DOUBLE_EQ(s.groups[0].busy_us, 22.0);
  EXPECT_DOUBLE_EQ(s.groups[0].launches, 1.0);
  EXPECT_DOUBLE_EQ(s.groups[0].mean_us, 22.0);
  EXPECT_EQ(s.groups[0].smem_config, 233472u);
  EXPECT_EQ(s.groups[1].name, "gemv");
  EXPECT_EQ(s.groups[2].name, "merge");
  EXPECT_DOUBLE_EQ(s.groups[2].busy_us, 5.0);
}

TEST(KernelTrace, SummaryOfNothingIsZero) {
  const KernelTraceSummary s = summarize_kernels({}, 4);
  EXPECT_EQ(s.window_us, 0.0);
  EXPECT_EQ(s.kernels, 0.0);
  EXPECT_TRUE(s.groups.empty());
}

TEST(KernelTrace, ANestedKernelDoesNotExtendTheRunningTime) {
  const KernelTraceSummary s =
      summarize_kernels({rec("a", 0, 10000), rec("b", 2000, 5000), rec("c", 12000, 13000)}, 1);
  EXPECT_DOUBLE_EQ(s.covered_us, 11.0);
  EXPECT_DOUBLE_EQ(s.idle_us, 2.0);
  EXPECT_DOUBLE_EQ(s.overlap_us, 3.0);
}

TEST(KernelTrace, FormattedSummaryNamesTheRowAndTheLargestGroups) {
  const KernelTraceSummary s = summarize_kernels(
      {rec("big", 0, 9000, 233472), rec("small", 9000, 10000), rec("tiny", 10000, 10100)}, 1);
  const std::string text = format_kernel_summary("llama3-8b context 10000", s, 2);
  EXPECT_NE(text.find("# kernel_trace llama3-8b context 10000: per replay 10.1 us"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("big"), std::string::npos);
  EXPECT_NE(text.find("small"), std::string::npos);
  EXPECT_EQ(text.find("tiny"), std::string::npos) << "only the top 2";
  EXPECT_NE(text.find("228  big"), std::string::npos) << text;  // 233472 bytes = 228 KiB
}

TEST(KernelTrace, ChromeTraceHoldsARowPerProcess) {
  const std::string path = ::testing::TempDir() + "kernel_trace_test.json";
  std::vector<KernelRecord> row0 = {rec("gemv", 5000, 15000), rec("attention", 15000, 40000)};
  row0[1].grid[0] = 33;
  row0[1].stream = 7;
  ASSERT_TRUE(write_chrome_trace(path, {"row zero", "row one"}, {row0, {}}).ok());
  std::ifstream f(path);
  const nlohmann::json j = nlohmann::json::parse(f);
  const auto& ev = j.at("traceEvents");
  ASSERT_EQ(ev.size(), 4u);  // two process names, two kernels
  EXPECT_EQ(ev[0].at("args").at("name"), "row zero");
  EXPECT_EQ(ev[1].at("name"), "gemv");
  EXPECT_DOUBLE_EQ(ev[1].at("ts").get<double>(), 0.0);  // from the row's first start
  EXPECT_DOUBLE_EQ(ev[1].at("dur").get<double>(), 10.0);
  EXPECT_EQ(ev[2].at("tid"), 7);
  EXPECT_DOUBLE_EQ(ev[2].at("ts").get<double>(), 10.0);
  EXPECT_EQ(ev[2].at("args").at("grid")[0], 33);
  EXPECT_EQ(ev[3].at("pid"), 1);
  EXPECT_EQ(ev[3].at("args").at("name"), "row one");
  std::remove(path.c_str());
  EXPECT_EQ(write_chrome_trace(path, {"one label"}, {}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(write_chrome_trace("/nonexistent-dir/x.json", {}, {}).code(),
            StatusCode::kInvalidArgument);
}

TEST(KernelTrace, KernelNamesAreDemangledWithoutParametersOrOurNamespaces) {
  // void tidal::kernels::cuda::attention::merge<float>(int, float*)
  EXPECT_EQ(kernel_display_name("_ZN5tidal7kernels4cuda9attention5mergeIfEEviPf"),
            "attention::merge<float>");
  // nvcc's anonymous namespace: the kernel's own name, not what precedes "(anonymous namespace)".
  EXPECT_EQ(kernel_display_name("_ZN5tidal7kernels4cuda47_GLOBAL__N__99af54c0_14_fill_random_cu_"
                                "c9edb02518fill_random_kernelIfLi4EEEvPT_lmdd"),
            "fill_random_kernel<float, 4>");
  EXPECT_EQ(kernel_display_name("plain_c_kernel"), "plain_c_kernel");
  EXPECT_EQ(kernel_display_name(nullptr), "?");
}

}  // namespace
}  // namespace tidal::launch
