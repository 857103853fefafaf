// SPDX-License-Identifier: Apache-2.0
// copy_rows on the host: runs at any pitches, a single run, contiguous rows as one copy, and a
// pitch shorter than a row refused (the device paths: CopyRowsCuda in engine_cuda_test).
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "runtime/device.h"

namespace tidal {
namespace {

TEST(CopyRows, ColumnBlockOfARowMajorMatrix) {
  constexpr size_t kRows = 5, kCols = 12, kFirst = 3, kWidth = 4;
  std::vector<uint8_t> src(kRows * kCols);
  for (size_t i = 0; i < src.size(); ++i) src[i] = uint8_t(i);
  std::vector<uint8_t> got(kRows * kWidth, 0xEE);
  copy_rows(got.data(), Device{}, kWidth, src.data() + kFirst, Device{}, kCols, kWidth, kRows,
            Stream{});
  for (size_t r = 0; r < kRows; ++r) {
    for (size_t c = 0; c < kWidth; ++c) {
      EXPECT_EQ(got[r * kWidth + c], src[r * kCols + kFirst + c]) << r << "," << c;
    }
  }
  // Into a wider destination: the bytes between the runs stay as they were.
  std::vector<uint8_t> wide(kRows * 6, 0xEE);
  copy_rows(wide.data(), Device{}, 6, src.data(), Device{}, kCols, kWidth, kRows, Stream{});
  for (size_t r = 0; r < kRows; ++r) {
    EXPECT_EQ(wide[r * 6 + 3], src[r * kCols + 3]);
    EXPECT_EQ(wide[r * 6 + 4], 0xEE);
    EXPECT_EQ(wide[r * 6 + 5], 0xEE);
  }
}

TEST(CopyRows, OneRunAndContiguousRowsAndNothing) {
  std::vector<uint8_t> src = {1, 2, 3, 4, 5, 6, 7, 8}, got(8, 0);
  copy_rows(got.data(), Device{}, 0, src.data() + 2, Device{}, 0, 3, 1, Stream{});
  EXPECT_EQ(std::vector<uint8_t>(got.begin(), got.begin() + 4), (std::vector<uint8_t>{3, 4, 5, 0}));
  copy_rows(got.data(), Device{}, 4, src.data(), Device{}, 4, 4, 2, Stream{});
  EXPECT_EQ(got, src);
  copy_rows(nullptr, Device{}, 4, nullptr, Device{}, 4, 4, 0, Stream{});  // no rows: no access
}

TEST(CopyRowsDeathTest, APitchShorterThanARowIsABug) {
  std::vector<uint8_t> src(16), dst(16);
  EXPECT_DEATH(copy_rows(dst.data(), Device{}, 2, src.data(), Device{}, 4, 4, 2, Stream{}),
               "pitch shorter than a row");
}

}  // namespace
}  // namespace tidal
