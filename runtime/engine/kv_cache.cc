// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/kv_cache.h"

#include <string>
#include <utility>

#include "runtime/size_math.h"

namespace tidal::engine {
namespace {

// The arena holds num_pages + 1 pages: the last one is the padding page.
void carve(const model::ModelConfig& m, const KvCacheConfig& c, BumpAllocator& a,
           std::vector<model::KvLayer>* layers) {
  const int64_t pages = c.num_pages + 1;
  const int64_t end = c.layer_end < 0 ? m.num_layers : c.layer_end;
  layers->assign(size_t(m.num_layers), model::KvLayer());
  for (int64_t i = c.layer_begin; i < end; ++i) {
    model::KvLayer& l = (*layers)[size_t(i)];
    const DType kv = c.fp8 ? DType::kU8 : c.dtype;
    l.k = a.allocate(kv, {pages, c.page_size, m.num_kv_heads, m.head_dim});
    l.v = a.allocate(kv, {pages, c.page_size, m.num_kv_heads, m.head_dim});
    if (c.fp8) {
      l.k_scale = a.allocate(DType::kF32, {pages, m.num_kv_heads, c.page_size});
      l.v_scale = a.allocate(DType::kF32, {pages, m.num_kv_heads, c.page_size});
    }
    // Quest's per-page key bounds: a second small paged cache (2 rows per page, not per token).
    if (c.quest_bounds) {
      l.key_max = a.allocate(c.dtype, {pages, m.num_kv_heads, m.head_dim});
      l.key_min = a.allocate(c.dtype, {pages, m.num_kv_heads, m.head_dim});
    }
  }
}

}  // namespace

Status KvCacheConfig::validate() const {
  if (page_size < 1) return invalid_argument("page_size must be >= 1");
  if (num_pages < 1) return invalid_argument("the KV cache needs at least one page");
  if (num_pages >= INT32_MAX) return invalid_argument("too many KV pages for i32 page ids");
  if (layer_begin < 0 || (layer_end >= 0 && layer_end <= layer_begin)) {
    return invalid_argument("the KV cache's layer range is empty or negative");
  }
  return ok_status();
}

size_t KvCache::bytes_for(const model::ModelConfig& model, const KvCacheConfig& config) {
  BumpAllocator plan = BumpAllocator::planner(config.device);
  std::vector<model::KvLayer> layers;
  carve(model, config, plan, &layers);
  return plan.used();
}

size_t KvCache::bytes_per_page(const model::ModelConfig& model, int64_t page_size, DType dtype,
                               int64_t layers, bool fp8, bool quest_bounds) {
  // K and V of page_size tokens, and two bound rows (in `dtype`), per layer and KV head.
  const size_t n = size_t(layers < 0 ? model.num_layers : layers);
  return size_t(page_size) * bytes_per_token(model, dtype, int64_t(n), fp8) +
         (quest_bounds ? n * size_t(model.kv_dim()) * dtype_size(dtype) * 2 : 0);
}

size_t KvCache::bytes_per_token(const model::ModelConfig& model, DType dtype, int64_t layers,
                                bool fp8) {
  // FP8: a byte per element, and a 4-byte scale per KV head, for K and for V.
  const size_t row = fp8 ? size_t(model.kv_dim()) + 4 * size_t(model.num_kv_heads)
                         : size_t(model.kv_dim()) * dtype_size(dtype);
  return 2 * size_t(layers) * row;
}

Status KvCache::create(const model::ModelConfig& model, const KvCacheConfig& config, KvCache* out) {
  TIDAL_RETURN_IF_ERROR(config.validate());
  Arena arena;
  TIDAL_RETURN_IF_ERROR(
      Arena::create(bytes_for(model, config), "KV cache", config.device, &arena));
  BumpAllocator alloc = arena.allocator();
  out->config_ = config;
  carve(model, config, alloc, &out->layers_);
  out->free_.clear();
  for (int64_t p = config.num_pages - 1; p >= 0; --p) out->free_.push_back(int32_t(p));
  out->arena_ = std::move(arena);
  return ok_status();
}

Status KvCache::reserve(std::vector<int32_t>* block_table, int64_t num_tokens) {
  // (ceil_div: a count near INT64_MAX asks for more pages than there are, not for none.)
  const int64_t need = ceil_div(num_tokens, config_.page_size);
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
