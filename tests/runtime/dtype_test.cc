// SPDX-License-Identifier: Apache-2.0
// Exactness of the host 16-bit float conversions.
#include "runtime/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

namespace tidal {
namespace {

TEST(Bf16, RoundTripsEveryBf16Value) {
  for (uint32_t bits = 0; bits < 0x10000u; ++bits) {
    const bf16 b{uint16_t(bits)};
    const float f = bf16_to_f32(b);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
      continue;
    }
    EXPECT_EQ(f32_to_bf16(f).bits, b.bits) << "bits " << bits;
  }
}

TEST(Bf16, RoundsToNearestEven) {
  // 1 + 2^-8 is halfway between bf16 1.0 and 1 + 2^-7: ties go to the even mantissa (1.0).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 0.00390625f)), 1.0f);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 3 * 0.00390625f)), 1.0f + 0.015625f);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(3.14159265f)), 3.140625f);
}

TEST(F16, RoundTripsEveryF16Value) {
  for (uint32_t bits = 0; bits < 0x10000u; ++bits) {
    const f16 h{uint16_t(bits)};
    const float f = f16_to_f32(h);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
      continue;
    }
    EXPECT_EQ(f32_to_f16(f).bits, h.bits) << "bits " << bits;
  }
}

TEST(F16, KnownValues) {
  EXPECT_EQ(f16_to_f32(f16{0x3c00}), 1.0f);
  EXPECT_EQ(f16_to_f32(f16{0xc000}), -2.0f);
  EXPECT_EQ(f16_to_f32(f16{0x7bff}), 65504.0f);
  EXPECT_EQ(f16_to_f32(f16{0x0001}), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f32_to_f16(65520.0f).bits, 0x7c00);               // rounds up to infinity
  EXPECT_EQ(f32_to_f16(65519.0f).bits, 0x7bff);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)).bits, 0x0000);            // tie to even: zero
  EXPECT_EQ(f32_to_f16(std::ldexp(1.5f, -25)).bits, 0x0001);            // above the tie
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -14) * 0.9999f).bits, 0x0400);  // carries to normal
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)).bits, 0x3c00);     // tie to even
  EXPECT_EQ(f32_to_f16(-std::numeric_limits<float>::infinity()).bits, 0xfc00);
}

TEST(F16, MatchesExactRoundingOnRandomFloats) {
  // Reference: the nearest f16 by exhaustive search over the two neighbours of the truncation.
  uint32_t state = 12345;
  for (int i = 0; i < 20000; ++i) {
    state = state * 1664525u + 1013904223u;
    const float f = std::ldexp(float(state >> 8) / float(1 << 24), int(state % 40) - 26);
    const f16 h = f32_to_f16(f);
    const float got = f16_to_f32(h);
    const float up = f16_to_f32(f16{uint16_t(h.bits + 1)});
    const float down = h.bits ? f16_to_f32(f16{uint16_t(h.bits - 1)}) : 0.0f;
    EXPECT_LE(std::fabs(got - f), std::fabs(up - f)) << f;
    EXPECT_LE(std::fabs(got - f), std::fabs(down - f)) << f;
  }
}

TEST(DType, SizesAndNames) {
  EXPECT_EQ(dtype_size(DType::kBF16), 2u);
  EXPECT_EQ(dtype_size(DType::kI64), 8u);
  EXPECT_STREQ(dtype_name(DType::kF16), "f16");
  EXPECT_EQ(round_to(DType::kBF16, 1.00001f), 1.0f);
}

}  // namespace
}  // namespace tidal
