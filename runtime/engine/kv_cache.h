// SPDX-License-Identifier: Apache-2.0
// Paged KV cache (DESIGN.md §5): one arena on the engine's device holding, per layer, a K and a V
// cache of [num_pages, page_size, num_kv_heads, head_dim] and Quest's per-page key bounds; pages
// are handed to sequences on demand and returned when they finish. Capacity is planned once at
// start. One extra page, never handed out, takes the writes of a CUDA graph's padding tokens.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/llama.h"
#include "runtime/arena.h"
#include "runtime/status.h"

namespace tidal::engine {

struct KvCacheConfig {
  int64_t page_size = 16;     // tokens per page; Default: 16
  int64_t num_pages = 0;      // pages sequences can hold (shared by all sequences)
  DType dtype = DType::kF32;  // K, V and bounds; Default: f32 (the CPU reference)
  // K and V as FP8 e4m3 codes with an f32 scale per (token, KV head) row
  // (kernels/paged_kv_common.h); the bounds stay in `dtype`. Default: false.
  bool fp8 = false;
  // Quest's per-page key bounds (two rows per page, KV head and layer, in `dtype`). false: none
  // are kept, and no Quest request can run. Default: true.
  bool quest_bounds = true;
  Device device;  // Default: the CPU
  // Layers whose cache this holds, [layer_begin, layer_end) (a pipeline stage's; the others'
  // views stay empty). Default: 0, -1 (every layer).
  int64_t layer_begin = 0;
  int64_t layer_end = -1;

  Status validate() const;
};

class KvCache {
 public:
  static Status create(const model::ModelConfig& model, const KvCacheConfig& config, KvCache* out);
  // Bytes of the arena for `num_pages` pages (K, V and page bounds, every layer, plus the
  // padding page).
  static size_t bytes_for(const model::ModelConfig& model, const KvCacheConfig& config);
  // Bytes one more page adds (K, V, their FP8 scales and, with quest_bounds, its bounds; every
  // layer held; `layers`: how many, -1 all).
  static size_t bytes_per_page(const model::ModelConfig& model, int64_t page_size, DType dtype,
                               int64_t layers = -1, bool fp8 = false, bool quest_bounds = true);
  // Bytes of one token's K and V (and FP8 scales) over `layers` layers.
  static size_t bytes_per_token(const model::ModelConfig& model, DType dtype, int64_t layers,
                                bool fp8);

  const std::vector<model::KvLayer>& layers() const { return layers_; }
  int64_t page_size() const { return config_.page_size; }
  int64_t num_pages() const { return config_.num_pages; }
  int64_t free_pages() const { return int64_t(free_.size()); }
  int64_t capacity_tokens() const { return config_.num_pages * config_.page_size; }
  // The page padding tokens write to: never handed to a sequence.
  int32_t padding_page() const { return int32_t(config_.num_pages); }
  DType dtype() const { return config_.dtype; }
  bool fp8() const { return config_.fp8; }
  size_t bytes() const { return arena_.bytes(); }

  // Grows `block_table` until it covers `num_tokens` positions. kOutOfMemory (and no change)
  // when the free pages do not suffice.
  Status reserve(std::vector<int32_t>* block_table, int64_t num_tokens);
  // Returns every page of `block_table` to the free list and clears it.
  void release(std::vector<int32_t>* block_table);

 private:
  KvCacheConfig config_;
  std::vector<model::KvLayer> layers_;
  std::vector<int32_t> free_;  // free page ids, popped from the back (lowest id first)
  Arena arena_;
};

}  // namespace tidal::engine
