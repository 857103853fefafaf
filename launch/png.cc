// SPDX-License-Identifier: Apache-2.0
#include "launch/png.h"

#include <array>
#include <fstream>

#if TIDAL_HAVE_ZLIB
#include <zlib.h>
#endif

namespace tidal::launch {
namespace {

void put_u32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(char((v >> shift) & 0xff));
}

void put_chunk(std::string* out, const char* type, const std::string& data) {
  put_u32(out, uint32_t(data.size()));
  const std::string body = std::string(type, 4) + data;
  out->append(body);
  put_u32(out, crc32_of(reinterpret_cast<const uint8_t*>(body.data()), body.size()));
}

uint32_t adler32_of(const std::string& data) {
  uint32_t a = 1, b = 0;
  for (unsigned char c : data) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  return (b << 16) | a;
}

// A zlib stream of stored deflate blocks (no compression).
std::string zlib_stored(const std::string& raw) {
  std::string out = "\x78\x01";
  size_t pos = 0;
  do {
    const size_t n = std::min<size_t>(65535, raw.size() - pos);
    const bool last = pos + n == raw.size();
    out.push_back(char(last ? 1 : 0));
    out.push_back(char(n & 0xff));
    out.push_back(char(n >> 8));
    out.push_back(char(~n & 0xff));
    out.push_back(char((~n >> 8) & 0xff));
    out.append(raw, pos, n);
    pos += n;
  } while (pos < raw.size());
  put_u32(&out, adler32_of(raw));
  return out;
}

std::string zlib_compress(const std::string& raw) {
#if TIDAL_HAVE_ZLIB
  uLongf size = compressBound(uLong(raw.size()));
  std::string out(size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(out.data()), &size,
                reinterpret_cast<const Bytef*>(raw.data()), uLong(raw.size()), 9) == Z_OK) {
    out.resize(size);
    return out;
  }
#endif
  return zlib_stored(raw);
}

}  // namespace

Image::Image(int w, int h, Rgb fill) : width(w), height(h), rgb(size_t(w) * size_t(h) * 3) {
  for (size_t i = 0; i < rgb.size(); i += 3) {
    rgb[i] = fill.r;
    rgb[i + 1] = fill.g;
    rgb[i + 2] = fill.b;
  }
}

void Image::set(int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= width || y >= height) return;
  uint8_t* p = &rgb[(size_t(y) * size_t(width) + size_t(x)) * 3];
  p[0] = c.r;
  p[1] = c.g;
  p[2] = c.b;
}

Rgb Image::at(int x, int y) const {
  const uint8_t* p = &rgb[(size_t(y) * size_t(width) + size_t(x)) * 3];
  return {p[0], p[1], p[2]};
}

uint32_t crc32_of(const uint8_t* data, size_t size, uint32_t crc) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

std::string encode_png(const Image& image) {
  std::string out = "\x89PNG\r\n\x1a\n";
  std::string header;
  put_u32(&header, uint32_t(image.width));
  put_u32(&header, uint32_t(image.height));
  header += std::string("\x08\x02\x00\x00\x00", 5);  // 8 bits, RGB, deflate, filter 0, no interlace
  put_chunk(&out, "IHDR", header);
  // Each row: filter type 0 (none), then its pixels.
  std::string raw;
  raw.reserve(size_t(image.height) * (size_t(image.width) * 3 + 1));
  for (int y = 0; y < image.height; ++y) {
    raw.push_back('\0');
    raw.append(reinterpret_cast<const char*>(&image.rgb[size_t(y) * size_t(image.width) * 3]),
               size_t(image.width) * 3);
  }
  put_chunk(&out, "IDAT", zlib_compress(raw));
  put_chunk(&out, "IEND", "");
  return out;
}

Status write_png(const std::string& path, const Image& image) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  const std::string bytes = encode_png(image);
  if (!f || !f.write(bytes.data(), std::streamsize(bytes.size())) || !f.flush()) {
    return unavailable(path + ": cannot write the PNG");
  }
  return ok_status();
}

}  // namespace tidal::launch
