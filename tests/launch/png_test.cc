// SPDX-License-Identifier: Apache-2.0
// The PNG writer and the pictures: a written PNG decodes (zlib) back to its pixels with valid
// chunk CRCs; heatmap cells take the colour of their value; text draws pixels.
#include <cmath>
#include <cstring>
#include <string>

#include "launch/plot.h"
#include "launch/png.h"
#include "tests/testing/testing.h"

#if TIDAL_HAVE_ZLIB
#include <zlib.h>
#endif

namespace tidal::launch {
namespace {

uint32_t be32(const std::string& s, size_t at) {
  return uint32_t(uint8_t(s[at])) << 24 | uint32_t(uint8_t(s[at + 1])) << 16 |
         uint32_t(uint8_t(s[at + 2])) << 8 | uint32_t(uint8_t(s[at + 3]));
}

struct Chunk {
  std::string type, data;
};

// Splits a PNG into chunks, checking the signature and every CRC.
std::vector<Chunk> chunks_of(const std::string& png) {
  std::vector<Chunk> out;
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  for (size_t at = 8; at + 12 <= png.size();) {
    const uint32_t len = be32(png, at);
    Chunk c{png.substr(at + 4, 4), png.substr(at + 8, len)};
    const std::string body = png.substr(at + 4, 4 + len);
    EXPECT_EQ(be32(png, at + 8 + len),
              crc32_of(reinterpret_cast<const uint8_t*>(body.data()), body.size()))
        << c.type;
    out.push_back(c);
    at += 12 + len;
  }
  return out;
}

TEST(Png, CrcOfTheStandardCheckString) {
  const char* s = "123456789";
  EXPECT_EQ(crc32_of(reinterpret_cast<const uint8_t*>(s), 9), 0xCBF43926u);
}

TEST(Png, ChunksAndHeader) {
  Image img(3, 2, {10, 20, 30});
  const std::vector<Chunk> c = chunks_of(encode_png(img));
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].type, "IHDR");
  EXPECT_EQ(be32(c[0].data, 0), 3u);
  EXPECT_EQ(be32(c[0].data, 4), 2u);
  EXPECT_EQ(c[0].data.substr(8), std::string("\x08\x02\x00\x00\x00", 5));  // 8-bit RGB
  EXPECT_EQ(c[1].type, "IDAT");
  EXPECT_EQ(c[2].type, "IEND");
}

TEST(Png, PixelsComeBack) {
#if !TIDAL_HAVE_ZLIB
  GTEST_SKIP() << "built without zlib: nothing here to inflate with";
#else
  Image img(5, 4, {255, 255, 255});
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 5; ++x) img.set(x, y, {uint8_t(x * 40), uint8_t(y * 60), uint8_t(x + y)});
  }
  img.set(9, 9, {1, 2, 3});  // outside: ignored
  const std::vector<Chunk> c = chunks_of(encode_png(img));
  std::string raw(4 * (5 * 3 + 1), '\0');
  uLongf size = uLongf(raw.size());
  ASSERT_EQ(uncompress(reinterpret_cast<Bytef*>(raw.data()), &size,
                       reinterpret_cast<const Bytef*>(c[1].data.data()), uLong(c[1].data.size())),
            Z_OK);
  ASSERT_EQ(size, raw.size());
  for (int y = 0; y < 4; ++y) {
    EXPECT_EQ(raw[size_t(y) * 16], '\0');  // filter: none
    for (int x = 0; x < 5; ++x) {
      const size_t at = size_t(y) * 16 + 1 + size_t(x) * 3;
      EXPECT_EQ(uint8_t(raw[at]), x * 40);
      EXPECT_EQ(uint8_t(raw[at + 1]), y * 60);
      EXPECT_EQ(uint8_t(raw[at + 2]), x + y);
    }
  }
#endif
}

TEST(Plot, HeatmapCellsTakeTheirValuesColour) {
  Heatmap h;
  h.title = "t";
  h.x_labels = {"0", "50", "100"};
  h.y_labels = {"1024"};
  h.values = {{0.0, NAN, 1.0}};
  const Image img = render_heatmap(h);  // no axis titles: the title is the only other ink
  // The first row holding a colour (neither white nor the black of text) is the cells' top edge.
  int top = -1;
  for (int y = 0; y < img.height && top < 0; ++y) {
    for (int x = 0; x < img.width; ++x) {
      const Rgb p = img.at(x, y);
      const bool white = p.r == 255 && p.g == 255 && p.b == 255;
      if (!white && !(p.r == 0 && p.g == 0 && p.b == 0)) {
        top = y;
        break;
      }
    }
  }
  ASSERT_GE(top, 0);
  std::vector<Rgb> seen;
  for (int x = 0; x < img.width; ++x) {
    const Rgb p = img.at(x, top + 2);
    if (p.r == 255 && p.g == 255 && p.b == 255) continue;
    if (seen.empty() || seen.back().r != p.r || seen.back().g != p.g) seen.push_back(p);
  }
  ASSERT_GE(seen.size(), 3u);
  EXPECT_GT(seen[0].r, 150);  // 0: red
  EXPECT_LT(seen[0].g, 100);
  EXPECT_EQ(seen[1].r, seen[1].g);  // not measured: grey
  EXPECT_GT(seen.back().g, 120);    // 1: green
  EXPECT_LT(seen.back().r, 100);
}

TEST(Plot, TextDrawsInsideItsWidth) {
  Image img(100, 20, {255, 255, 255});
  draw_text(&img, 2, 2, "K=64", 1, {0, 0, 0});
  int dark = 0, right = 0;
  for (int y = 0; y < 20; ++y) {
    for (int x = 0; x < 100; ++x) {
      if (img.at(x, y).r == 0) {
        ++dark;
        right = std::max(right, x);
      }
    }
  }
  EXPECT_GT(dark, 20);
  EXPECT_EQ(text_width("K=64", 1), 23);
  EXPECT_LE(right, 2 + text_width("K=64", 1));
}

TEST(Plot, LineChartDrawsEverySeries) {
  LineChart c;
  c.title = "ppl";
  c.log_y = true;
  c.series = {{"a", {1, 2, 3}, {10, 20, 40}}, {"b", {1, 2, 3}, {100, 50, 0}}};
  const Image img = render_line_chart(c);
  int blue = 0, orange = 0;  // the first two palette colours
  for (int y = 0; y < img.height; ++y) {
    for (int x = 0; x < img.width; ++x) {
      const Rgb p = img.at(x, y);
      blue += p.r == 31 && p.g == 119 && p.b == 180;
      orange += p.r == 255 && p.g == 127 && p.b == 14;
    }
  }
  EXPECT_GT(blue, 100);
  EXPECT_GT(orange, 100);
}

}  // namespace
}  // namespace tidal::launch
