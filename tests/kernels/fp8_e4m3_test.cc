// SPDX-License-Identifier: Apache-2.0
// The e4m3 conversions: every code decoded against the format's definition, every rounding
// boundary between neighbouring codes, saturation, NaN, and random values against a brute-force
// nearest search; the KV rows' power-of-two scale.
#include "kernels/fp8_e4m3.h"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

// The format's definition, written independently of fp8_e4m3.h: the value of a code as a
// double, NaN for S.1111.111.
double defined_value(int code) {
  const int s = code >> 7, e = (code >> 3) & 15, m = code & 7;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  const double mag = e == 0 ? m / 8.0 * std::pow(2.0, -6) : (1.0 + m / 8.0) * std::pow(2.0, e - 7);
  return s ? -mag : mag;
}

// The nearest finite code to x by search (ties to the even code, i.e. even mantissa), saturating.
uint8_t brute_force_encode(float x) {
  if (std::isnan(x)) return 0x7F;
  const bool neg = std::signbit(x);
  const double a = std::fabs(double(x));
  int best = 0;
  double best_err = INFINITY;
  for (int c = 0; c <= 0x7E; ++c) {
    const double err = std::fabs(defined_value(c) - a);
    if (err < best_err || (err == best_err && (c & 1) == 0)) {
      best = c;
      best_err = err;
    }
  }
  return uint8_t((neg ? 0x80 : 0) | best);
}

TEST(E4m3, DecodesEveryCodeAsDefined) {
  int nans = 0;
  for (int c = 0; c < 256; ++c) {
    const double want = defined_value(c);
    const float got = e4m3_to_f32(uint8_t(c));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << c;
      ++nans;
      continue;
    }
    EXPECT_EQ(double(got), want) << "code " << c;
    EXPECT_EQ(std::signbit(got), c >= 0x80) << c;  // -0 stays -0
  }
  EXPECT_EQ(nans, 2);  // 0x7F and 0xFF
  EXPECT_EQ(e4m3_to_f32(0x7E), 448.0f);
  EXPECT_EQ(e4m3_to_f32(0xFE), -448.0f);
  EXPECT_EQ(e4m3_to_f32(0x38), 1.0f);
  EXPECT_EQ(e4m3_to_f32(0x08), 0.015625f);         // smallest normal 2^-6
  EXPECT_EQ(e4m3_to_f32(0x01), 0.001953125f);      // smallest subnormal 2^-9
  EXPECT_EQ(e4m3_to_f32(0x07), 7 * 0.001953125f);  // largest subnormal
  for (int c = 1; c <= 0x7E; ++c) EXPECT_LT(e4m3_to_f32(uint8_t(c - 1)), e4m3_to_f32(uint8_t(c)));
}

TEST(E4m3, EveryCodeRoundTrips) {
  for (int c = 0; c < 256; ++c) {
    if (c == 0x7F || c == 0xFF) continue;
    EXPECT_EQ(f32_to_e4m3(e4m3_to_f32(uint8_t(c))), c) << c;
  }
  EXPECT_EQ(f32_to_e4m3(NAN), 0x7F);
  EXPECT_EQ(f32_to_e4m3(-NAN), 0x7F);
  EXPECT_TRUE(std::isnan(e4m3_to_f32(f32_to_e4m3(NAN))));
}

// Between every two neighbouring codes (zero and the subnormals included, both signs): the
// midpoint goes to the even code, one f32 ulp either side to the nearer one.
TEST(E4m3, RoundsToNearestTiesToEvenAtEveryBoundary) {
  int ties = 0;
  for (const float sign : {1.0f, -1.0f}) {
    for (int c = 0; c < 0x7E; ++c) {
      const float lo = sign * e4m3_to_f32(uint8_t(c)), hi = sign * e4m3_to_f32(uint8_t(c + 1));
      const float mid = (lo + hi) / 2;  // exact: both have 4 significant bits
      ASSERT_EQ(double(mid), (double(lo) + double(hi)) / 2);
      const uint8_t s = sign < 0 ? 0x80 : 0;
      const int even = (c & 1) == 0 ? c : c + 1;
      EXPECT_EQ(f32_to_e4m3(mid), s | even) << "tie between codes " << c << " and " << c + 1;
      EXPECT_EQ(f32_to_e4m3(std::nextafter(mid, lo)), s | c) << c;
      EXPECT_EQ(f32_to_e4m3(std::nextafter(mid, hi)), s | (c + 1)) << c;
      ++ties;
    }
  }
  EXPECT_EQ(ties, 2 * 126);
  // Named cases: half the smallest subnormal ties down to 0, one and a half of it up to 2 * 2^-9;
  // ties next to 1.0, and one across a binade.
  EXPECT_EQ(f32_to_e4m3(std::ldexp(1.0f, -10)), 0x00);
  EXPECT_EQ(f32_to_e4m3(3 * std::ldexp(1.0f, -10)), 0x02);
  EXPECT_EQ(f32_to_e4m3(1.0625f), 0x38);  // tie between 1.0 (0x38) and 1.125 (0x39)
  EXPECT_EQ(f32_to_e4m3(1.1875f), 0x3A);  // tie between 1.125 (0x39) and 1.25 (0x3A)
  EXPECT_EQ(f32_to_e4m3(15.5f), 0x58);    // tie between 15 (0x57) and 16 (0x58): next binade
}

TEST(E4m3, SaturatesToPlusMinus448) {
  EXPECT_EQ(f32_to_e4m3(448.0f), 0x7E);
  EXPECT_EQ(f32_to_e4m3(447.0f), 0x7E);
  EXPECT_EQ(f32_to_e4m3(464.0f), 0x7E);  // the midpoint to the would-be 480
  EXPECT_EQ(f32_to_e4m3(1e30f), 0x7E);
  EXPECT_EQ(f32_to_e4m3(INFINITY), 0x7E);
  EXPECT_EQ(f32_to_e4m3(-INFINITY), 0xFE);
  EXPECT_EQ(f32_to_e4m3(-500.0f), 0xFE);
  EXPECT_EQ(f32_to_e4m3(std::numeric_limits<float>::max()), 0x7E);
  EXPECT_EQ(f32_to_e4m3(-0.0f), 0x80);
  EXPECT_EQ(f32_to_e4m3(std::numeric_limits<float>::denorm_min()), 0x00);
}

TEST(E4m3, RandomValuesMatchABruteForceNearestSearch) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> exponent(-14.0f, 10.0f);
  for (int i = 0; i < 20000; ++i) {
    const float x = (rng() & 1 ? -1.0f : 1.0f) * std::exp2(exponent(rng));
    ASSERT_EQ(f32_to_e4m3(x), brute_force_encode(x)) << x;
  }
}

TEST(E4m3, RowScaleIsTheSmallestPowerOfTwoThatFits) {
  EXPECT_EQ(e4m3_row_scale(0.0f), 1.0f);
  EXPECT_EQ(e4m3_row_scale(INFINITY), 1.0f);
  EXPECT_EQ(e4m3_row_scale(NAN), 1.0f);
  EXPECT_EQ(e4m3_row_scale(448.0f), 1.0f);
  EXPECT_EQ(e4m3_row_scale(std::nextafter(448.0f, 1000.0f)), 2.0f);
  EXPECT_EQ(e4m3_row_scale(224.0f), 0.5f);
  EXPECT_EQ(e4m3_row_scale(std::nextafter(224.0f, 1000.0f)), 1.0f);
  EXPECT_EQ(e4m3_row_scale(1e-38f), std::ldexp(1.0f, -126));  // clamped: stays a normal f32
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> exponent(-40.0f, 40.0f);
  for (int i = 0; i < 2000; ++i) {
    const float amax = std::exp2(exponent(rng));
    const float s = e4m3_row_scale(amax);
    int e = 0;
    ASSERT_EQ(std::frexp(s, &e), 0.5f) << amax;  // a power of two
    ASSERT_LE(amax / s, 448.0f) << amax;
    ASSERT_GT(amax / s, 224.0f) << amax;
  }
}

// Each element within half an e4m3 ulp: 2^-4 relative for normals, 2^-10 * scale below them.
TEST(E4m3, RowQuantizationErrorIsWithinHalfAnUlp) {
  const std::vector<float> x = testing::random_normal(4096, 11, 3.0f);
  for (size_t r = 0; r < x.size(); r += 128) {
    uint8_t codes[128];
    float back[128];
    const float scale = quantize_e4m3_row(x.data() + r, 128, codes);
    dequantize_e4m3_row(codes, scale, 128, back);
    for (size_t i = 0; i < 128; ++i) {
      const float want = x[r + i];
      ASSERT_LE(std::fabs(back[i] - want),
                std::fmax(std::ldexp(std::fabs(want), -4), std::ldexp(scale, -10)))
          << r + i;
      ASSERT_EQ(double(back[i]), double(e4m3_to_f32(codes[i])) * double(scale));  // exact
    }
  }
}

}  // namespace
}  // namespace tidal::kernels
