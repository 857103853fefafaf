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

}  // namespace
}  // namespace tidal
