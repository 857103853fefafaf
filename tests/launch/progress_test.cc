// SPDX-License-Identifier: Apache-2.0
// The progress line of long prefills: its text (done / total, rate, time left), silence for short
// work, and one line per update in a log (stderr not a terminal).
#include "launch/progress.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <thread>

namespace tidal::launch {
namespace {

std::string read_all(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  char buf[256];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) s.append(buf, n);
  return s;
}

TEST(Progress, FormatsDoneTotalRateAndTimeLeft) {
  EXPECT_EQ(Progress::format("prefill", "tokens", 2048, 8192, 16.0),
            "tidal: prefill 2048/8192 tokens (25%), 128.0 tokens/s, 48 s left");
  EXPECT_EQ(Progress::format("prefill", "tokens", 8192, 8192, 64.0),
            "tidal: prefill 8192/8192 tokens (100%), 128.0 tokens/s");
  EXPECT_EQ(Progress::format("prefill", "tokens", 0, 100, 0.0),
            "tidal: prefill 0/100 tokens (0%), 0.0 tokens/s");
  // Sweeps show the time elapsed too.
  EXPECT_EQ(Progress::format("niah", "runs", 20, 80, 10.5, /*elapsed=*/true),
            "tidal: niah 20/80 runs (25%), 1.9 runs/s, 10 s elapsed, 32 s left");
}

TEST(Progress, SilentForShortWork) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    Progress p("prefill", "tokens", /*delay_seconds=*/60.0, f);
    p.start(100);
    for (int64_t i = 0; i <= 100; i += 10) p.update(i);
  }
  EXPECT_EQ(read_all(f), "");
  std::fclose(f);
}

TEST(Progress, LongWorkPrintsLinesAndTheEnd) {
  std::FILE* f = std::tmpfile();  // not a terminal: whole lines, the last one always
  ASSERT_NE(f, nullptr);
  {
    Progress p("prefill", "tokens", /*delay_seconds=*/0.0, f);
    p.start(300);
    p.update(100);
    p.update(200);  // within 10 s of the last line: not printed
    p.update(300);
  }
  const std::string out = read_all(f);
  EXPECT_EQ(out.find("tidal: prefill 100/300 tokens (33%)"), 0u) << out;
  EXPECT_EQ(out.find("200/300"), std::string::npos) << out;
  EXPECT_NE(out.find("\ntidal: prefill 300/300 tokens (100%)"), std::string::npos) << out;
  std::fclose(f);
}

}  // namespace
}  // namespace tidal::launch
