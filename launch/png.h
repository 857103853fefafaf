// SPDX-License-Identifier: Apache-2.0
// A minimal PNG writer (8-bit RGB, no interlacing) for the accuracy harnesses' heatmaps and
// curves: no image library, only zlib's compress2 when the build found zlib, and stored (raw)
// deflate blocks otherwise, which every PNG reader accepts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/status.h"

namespace tidal::launch {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // [height, width, 3], row-major

  Image(int w, int h, Rgb fill);
  void set(int x, int y, Rgb c);  // ignores points outside the image
  Rgb at(int x, int y) const;
};

uint32_t crc32_of(const uint8_t* data, size_t size, uint32_t crc = 0);
// The PNG file's bytes.
std::string encode_png(const Image& image);
Status write_png(const std::string& path, const Image& image);

}  // namespace tidal::launch
