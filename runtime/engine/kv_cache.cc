// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/kv_cache.h"

#include <string>
#include <utility>

namespace tidal::engine {
namespace {

void carve(const model::ModelConfig& m, int64_t page_size, int64_t num_pages, BumpAllocator& a,
           std::vector<model::KvLayer>* layers) {
  layers->resize(size_t(m.num_layers));
  for (model::KvLayer& l : *layers) {
    l.k = a.allocate(DType::kF32, {num_pages, page_size, m.num_kv_heads, m.head_dim});
    l.v = a.allocate(DType::kF32, {num_pages, page_size, m.num_kv_heads, m.head_dim});
    // Quest's per-page key bounds: a second small paged cache (2 rows per page, not per token).
    l.key_max = a.allocate(DType::kF32, {num_pages, m.num_kv_heads, m.head_dim});
    l.key_min = a.allocate(DType::kF32, {num_pages, m.num_kv_heads, m.head_dim});
  }
}

}  // namespace

Status KvCacheConfig::validate() const {
  if (page_size < 1) return invalid_argument("page_size must be >= 1");
  if (num_pages < 1) return invalid_argument("the KV cache needs at least one page");
  if (num_pages > INT32_MAX) return invalid_argument("too many KV pages for i32 page ids");
  return ok_status();
}

size_t KvCache::bytes_for(const model::ModelConfig& model, int64_t page_size, int64_t num_pages) {
  BumpAllocator plan = BumpAllocator::planner();
  std::vector<model::KvLayer> layers;
  carve(model, page_size, num_pages, plan, &layers);
  return plan.used();
}

Status KvCache::create(const model::ModelConfig& model, const KvCacheConfig& config, KvCache* out) {
  TIDAL_RETURN_IF_ERROR(config.validate());
  Arena arena;
  TIDAL_RETURN_IF_ERROR(
      Arena::create(bytes_for(model, config.page_size, config.num_pages), "KV cache", Device{}, &arena));
  BumpAllocator alloc = arena.allocator();
  out->config_ = config;
  carve(model, config.page_size, config.num_pages, alloc, &out->layers_);
  out->free_.clear();
  for (int64_t p = config.num_pages - 1; p >= 0; --p) out->free_.push_back(int32_t(p));
  out->arena_ = std::move(arena);
  return ok_status();
}

Status KvCache::reserve(std::vector<int32_t>* block_table, int64_t num_tokens) {
  const int64_t need = (num_tokens + config_.page_size - 1) / config_.page_size;
  const int64_t more = need - int64_t(block_table->size());
  if (more <= 0) return ok_status();
  if (more > free_pages()) {
    return out_of_memory(
        "KV cache full: " + std::to_string(num_tokens) + " tokens need " + std::to_string(more) +
        " more pages of " + std::to_string(config_.page_size) + " tokens, " +
        std::to_string(free_pages()) + " free of " + std::to_string(config_.num_pages));
  }
  for (int64_t i = 0; i < more; ++i) {
    block_table->push_back(free_.back());
    free_.pop_back();
  }
  return ok_status();
}

void KvCache::release(std::vector<int32_t>* block_table) {
  for (auto it = block_table->rbegin(); it != block_table->rend(); ++it) free_.push_back(*it);
  block_table->clear();
}

}  // namespace tidal::engine
