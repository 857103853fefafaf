// SPDX-License-Identifier: Apache-2.0
// Byte counts computed from config values and flags: products and sums that saturate at SIZE_MAX
// instead of wrapping, so a plan made from absurd sizes comes out too large (and is refused by a
// comparison with the memory there is), never small.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>

namespace tidal {

constexpr size_t kSizeSaturated = std::numeric_limits<size_t>::max();

inline size_t sat_mul(size_t a, size_t b) {
  size_t r = 0;
  return __builtin_mul_overflow(a, b, &r) ? kSizeSaturated : r;
}

inline size_t sat_add(size_t a, size_t b) {
  size_t r = 0;
  return __builtin_add_overflow(a, b, &r) ? kSizeSaturated : r;
}

// n / d rounded up, for n >= 0 and d > 0 (page counts): without n + d - 1, which wraps negative
// for n near INT64_MAX.
inline int64_t ceil_div(int64_t n, int64_t d) { return n / d + (n % d > 0 ? 1 : 0); }

// A non-negative int64 as a size (negative values are a caller's bug; they count as saturated).
inline size_t to_size(int64_t v) { return v < 0 ? kSizeSaturated : size_t(v); }

// "117.74 MiB": binary units (B, KiB, MiB, GiB, TiB, PiB, EiB), two decimals.
inline std::string human_bytes(size_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 6) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
  return buf;
}

// "123456789 bytes (117.74 MiB)": exact, then readable.
inline std::string bytes_string(size_t bytes) {
  return std::to_string(bytes) + " bytes (" + human_bytes(bytes) + ")";
}

}  // namespace tidal
