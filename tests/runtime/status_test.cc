// SPDX-License-Identifier: Apache-2.0
// Status values and propagation.
#include "runtime/status.h"

#include <gtest/gtest.h>

namespace tidal {
namespace {

Status fails() { return invalid_argument("bad budget"); }
Status propagates(bool* reached) {
  TIDAL_RETURN_IF_ERROR(fails());
  *reached = true;
  return ok_status();
}

TEST(Status, OkAndErrors) {
  EXPECT_TRUE(Status().ok());
  EXPECT_EQ(Status().to_string(), "ok");
  const Status s = not_found("no config.json");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.to_string(), "not found: no config.json");
  EXPECT_EQ(s.with_context("model dir").message(), "model dir: no config.json");
}

TEST(Status, ReturnIfErrorStopsEarly) {
  bool reached = false;
  const Status s = propagates(&reached);
  EXPECT_FALSE(reached);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
}

// printable: one line of valid UTF-8 whatever the bytes (names and text from files reach error
// messages, gRPC statuses and terminals). It passed invalid bytes through and could cut a
// character in two.
TEST(Status, PrintableIsOneLineOfValidUtf8) {
  EXPECT_EQ(printable("plain"), "plain");
  EXPECT_EQ(printable("a\nb\tc\x7f"), "a?b?c?");
  EXPECT_EQ(printable("caf\xC3\xA9 \xE2\x82\xAC"), "caf\xC3\xA9 \xE2\x82\xAC");  // kept
  EXPECT_EQ(printable("x\xC2\x85y"), "x?y");  // C1 control (NEL): one '?'
  EXPECT_EQ(printable("a\xFF" "b\xC3"), "a?b?");  // a stray byte, a truncated character
  EXPECT_EQ(printable("\xED\xA0\x80x"), "???x");  // a surrogate, byte by byte
  EXPECT_EQ(printable("\xC0\xAF"), "??");  // overlong '/'
  EXPECT_EQ(printable("abcdef", 4), "abcd...");
  // The cut falls before a character that does not fit, never inside it.
  EXPECT_EQ(printable("ab\xE2\x82\xAC", 4), "ab...");
  EXPECT_EQ(printable("ab\xE2\x82\xAC", 5), "ab\xE2\x82\xAC");
  EXPECT_EQ(printable("\xF0\x9F\x98\x80\xF0\x9F\x98\x80", 6), "\xF0\x9F\x98\x80...");
}

}  // namespace
}  // namespace tidal
