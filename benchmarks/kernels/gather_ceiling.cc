// SPDX-License-Identifier: Apache-2.0
// The gather ceiling's host side: its block count and its reference (gather_ceiling.h).
#include "benchmarks/kernels/gather_ceiling.h"

#include <cstring>

#include "runtime/check.h"

namespace tidal::bench {

namespace {

// Rows a block reads: 32 KiB of K rows (and as many of V), eight 16-byte words a thread of 256
// (gather_ceiling.cu's kThreads x kItems x 16).
constexpr int64_t kBlockRowBytes = 256 * 8 * 16;

int64_t rows_per_block(const GatherCeilingArgs& a) { return kBlockRowBytes / a.row_bytes; }

}  // namespace

int64_t gather_ceiling_blocks_per_head(const GatherCeilingArgs& a) {
  TIDAL_CHECK(a.row_bytes >= 16 && a.row_bytes % 16 == 0 && kBlockRowBytes % a.row_bytes == 0,
              "gather_ceiling: rows of 16 to 32768 bytes, a power of two times 16");
  return (a.budget + rows_per_block(a) - 1) / rows_per_block(a);
}

void gather_ceiling_host(const GatherCeilingArgs& a) {
  const int64_t blocks = gather_ceiling_blocks_per_head(a), per_block = rows_per_block(a);
  const int64_t words = a.row_bytes / 4, group = a.heads / a.kv_heads;
  for (int64_t h = 0; h < a.heads; ++h) {
    for (int64_t b = 0; b < blocks; ++b) {
      uint32_t x = 0;
      for (int64_t r = b * per_block; r < a.budget && r < (b + 1) * per_block; ++r) {
        const int64_t pos = a.lists[h * a.budget + r];
        const int64_t row = a.block_table != nullptr
                                ? int64_t(a.block_table[pos / a.page_size]) * a.page_size +
                                      pos % a.page_size
                                : pos;
        const int64_t at = (row * a.kv_heads + h / group) * a.row_bytes;
        for (const void* cache : {a.k, a.v}) {
          for (int64_t w = 0; w < words; ++w) {
            uint32_t word;
            std::memcpy(&word, static_cast<const char*>(cache) + at + 4 * w, 4);
            x ^= word;
          }
        }
      }
      a.out[h * blocks + b] = x;
    }
  }
}

}  // namespace tidal::bench
