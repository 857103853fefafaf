// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/stop_strings.h"

#include <gtest/gtest.h>

namespace tidal::engine {
namespace {

TEST(StopStrings, HoldsBackPossiblePrefixesAndCutsAtTheMatch) {
  StopStringMatcher m({"\n\n", "THE END"});
  std::string out;
  EXPECT_FALSE(m.feed("Once upon", &out));
  EXPECT_EQ(out, "Once upon");
  EXPECT_FALSE(m.feed(" a time.\n", &out));
  EXPECT_EQ(out, "Once upon a time.");  // "\n" may start "\n\n"
  EXPECT_FALSE(m.feed("TH", &out));
  EXPECT_EQ(out, "Once upon a time.\n");  // "\nTH" cannot start "\n\n"; "TH" may start "THE END"
  EXPECT_TRUE(m.feed("E ENDing", &out));
  EXPECT_EQ(out, "Once upon a time.\n");
}

TEST(StopStrings, FlushReleasesTheTail) {
  StopStringMatcher m({"xyz"});
  std::string out;
  EXPECT_FALSE(m.feed("abcxy", &out));
  EXPECT_EQ(out, "abc");
  m.flush(&out);
  EXPECT_EQ(out, "abcxy");
}

}  // namespace
}  // namespace tidal::engine
