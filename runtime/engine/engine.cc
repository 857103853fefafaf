// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/engine.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <tuple>
#include <utility>

#include "kernels/block_table_update.h"
#include "kernels/counter_rng.h"
#include "kernels/fill_random.h"
#include "kernels/fp8_e4m3.h"
#include "kernels/sample_tokens.h"
#include "model/safetensors.h"
#include "runtime/size_math.h"
#include "runtime/tensor_access.h"

namespace tidal::engine {
namespace {

int64_t resolved_context(const model::ModelConfig& m, const EngineConfig& c) {
  return c.max_context > 0 ? c.max_context : m.max_position_embeddings;
}

// KV pages for sequences: kv_capacity's, or room for max_batch sequences of the whole context.
// A sequence holds whole pages, so that is a whole number of pages each, not max_batch x
// max_context tokens rounded up (fewer sequences when page_size does not divide the context).
int64_t resolved_pages(const model::ModelConfig& m, const EngineConfig& c) {
  return c.kv_capacity > 0 ? ceil_div(c.kv_capacity, c.page_size)
                           : c.max_batch * ceil_div(resolved_context(m, c), c.page_size);
}

std::string str(int64_t v) { return std::to_string(v); }

StepCapacity step_capacity(const model::ModelConfig& m, const EngineConfig& c) {
  StepCapacity s;
  s.max_decode = c.max_batch;
  s.max_prefill_seqs = c.max_batch;
  s.max_tokens = c.max_batch + c.prefill_chunk;
  s.max_logits = 2 * c.max_batch;
  s.num_layers = m.num_layers;
  s.max_updates = c.max_batch + s.max_prefill_seqs + c.prefill_chunk / c.page_size + 1;
  return s;
}

model::WorkspaceShape workspace_shape(const model::ModelConfig& m, const EngineConfig& c) {
  const StepCapacity cap = step_capacity(m, c);
  model::WorkspaceShape s;
  s.max_tokens = cap.max_tokens;
  s.max_decode = cap.max_decode;
  s.max_logits = cap.max_logits;
  s.num_rows = c.max_batch + 1;  // + the padding row of graph buckets
  s.max_context = resolved_context(m, c);
  // Lists never hold more positions than a sequence has: a larger budget attends every one
  // (Engine::validate_sequence). Whole pages of them, so that Quest's page lists reach a
  // partial last page too.
  s.max_budget = std::min(c.max_budget, ceil_div(s.max_context, c.page_size) * c.page_size);
  s.page_size = c.page_size;
  s.dtype = c.dtype;
  s.device = c.device;
  return s;
}

int64_t max_pages(const model::ModelConfig& m, const EngineConfig& c) {
  return ceil_div(resolved_context(m, c), c.page_size);
}

// Device-side state besides the workspace: block tables and the step plan's device copy.
size_t state_bytes(const model::ModelConfig& m, const EngineConfig& c) {
  const size_t tables = size_t(c.max_batch + 1) * size_t(max_pages(m, c)) * 4;
  return (tables + 255) / 256 * 256 + StepPlan(step_capacity(m, c)).bytes();
}

// The KV cache an engine of `c` holds for its shard: `pages` pages.
KvCacheConfig kv_cache_config(const EngineConfig& c, const model::ModelShard& shard,
                              int64_t pages) {
  KvCacheConfig kv;
  kv.page_size = c.page_size;
  kv.num_pages = pages;
  kv.dtype = c.dtype;
  kv.fp8 = c.kv_dtype == KvDtype::kFp8;
  kv.quest_bounds = c.quest_bounds;
  kv.device = c.device;
  kv.layer_begin = shard.layer_begin;
  kv.layer_end = shard.layer_end;
  return kv;
}

// This process's part of the model: all of it, or its rank's shard (the whole model when the
// shard is impossible: Engine::create reports that).
model::ModelShard engine_shard(const model::ModelConfig& m, const EngineConfig& c) {
  model::ModelShard s = model::whole_model(m);
  if (c.distributed == nullptr) return s;
  model::ModelShard part;
  if (model::make_model_shard(m, c.distributed->parallel, c.distributed->coords(), &part).ok()) {
    s = part;
  }
  return s;
}

model::ParallelShape parallel_shape(const model::ModelConfig& m, const model::ModelShard& shard,
                                    const EngineConfig& c) {
  const StepCapacity cap = step_capacity(m, c);
  model::ParallelShape s;
  s.max_decode = cap.max_decode;
  s.max_budget = workspace_shape(m, c).max_budget;
  s.max_logits = cap.max_logits;
  s.vocab = m.vocab;
  s.vocab_shard = shard.vocab.size;
  s.tp_size = shard.parallel.tp_size;
  s.device = c.device;
  s.max_tokens = cap.max_tokens;
  s.hidden = m.hidden;
  s.dtype = c.dtype;
  return s;
}

kernels::TokenRole token_role(model::LayerRole role, int64_t layer, int64_t sparse_start) {
  switch (role) {
    case model::LayerRole::kDense: return kernels::TokenRole::kDense;
    case model::LayerRole::kSelect:
      return layer == sparse_start ? kernels::TokenRole::kSelect : kernels::TokenRole::kReselect;
    case model::LayerRole::kSparse: return kernels::TokenRole::kSparse;
    case model::LayerRole::kQuest: return kernels::TokenRole::kQuest;
  }
  return kernels::TokenRole::kDense;
}

}  // namespace

Status EngineConfig::validate() const {
  const struct {
    const char* name;
    int64_t value, min, max;
  } sizes[] = {
      {"page_size", page_size, 1, kMaxPageSize},
      {"max_batch", max_batch, 1, kMaxBatch},
      {"max_context", max_context, 0, kMaxContext},
      {"kv_capacity", kv_capacity, 0, kMaxKvCapacity},
      {"prefill_chunk", prefill_chunk, 1, kMaxPrefillChunk},
      {"max_budget", max_budget, 2, kMaxContext},
  };
  for (const auto& f : sizes) {
    if (f.value < f.min || f.value > f.max) {
      return invalid_argument(std::string(f.name) + " " + str(f.value) + " is out of range [" +
                              str(f.min) + ", " + str(f.max) + "]" +
                              (f.min == 0 ? " (0: automatic)" : ""));
    }
  }
  if (kv_capacity / page_size >= INT32_MAX - 1) {
    return invalid_argument("kv_capacity " + str(kv_capacity) + " is " +
                            str(kv_capacity / page_size) + " pages of page_size " + str(page_size) +
                            "; page ids are i32 (at most " + str(INT32_MAX - 2) + " pages)");
  }
  if (dtype != DType::kF32 && dtype != DType::kF16 && dtype != DType::kBF16) {
    return invalid_argument(std::string("dtype must be f32, f16 or bf16, not ") +
                            dtype_name(dtype));
  }
  if (device.kind == DeviceKind::kCuda && device.index >= cuda_device_count()) {
    return unavailable("no CUDA device " + str(device.index) + " (" + str(cuda_device_count()) +
                       " visible" + (TIDAL_WITH_CUDA ? ")" : "; built without CUDA)"));
  }
  return ok_status();
}

Status check_fits(const model::ModelConfig& model, const EngineConfig& config) {
  return check_fits(model, config, available_memory(config.device));
}

Status check_fits(const model::ModelConfig& model, const EngineConfig& config,
                  size_t available_bytes) {
  TIDAL_RETURN_IF_ERROR(model.validate());
  TIDAL_RETURN_IF_ERROR(config.validate());
  if (resolved_context(model, config) > model.max_position_embeddings) {
    return invalid_argument("max_context " + str(resolved_context(model, config)) +
                            " exceeds the model's context of " +
                            str(model.max_position_embeddings) + " tokens");
  }
  return plan_fits(model, config, plan_memory(model, config, available_bytes));
}

const char* kv_dtype_name(KvDtype kv, DType activation) {
  return kv == KvDtype::kFp8 ? "fp8" : dtype_name(activation);
}

size_t available_memory(Device device) {
  if (device.kind == DeviceKind::kCpu) return available_host_memory();
  DeviceInfo info;
  return cuda_device_info(device.index, &info).ok() ? info.free_bytes : 0;
}

size_t MemoryPlan::total_bytes() const {
  return sat_add(sat_add(weight_bytes, kv_bytes), workspace_bytes);
}

namespace {

// The plan of a process holding `shard`; `job`: a rank of an mpirun job (even of one rank), which
// also holds the collectives' buffers.
MemoryPlan plan_shard(const model::ModelConfig& model, const EngineConfig& config,
                      size_t available_bytes, const model::ModelShard& shard, bool job) {
  const model::ModelConfig local = shard.local(model);
  const int64_t layers = shard.layer_end - shard.layer_begin;
  MemoryPlan p;
  p.device = config.device;
  p.dtype = config.dtype;
  p.available_bytes = available_bytes;
  p.device_name = "cpu";
  DeviceInfo info;
  if (config.device.kind == DeviceKind::kCuda && cuda_device_info(config.device.index, &info).ok()) {
    p.device_name = info.name;
  }
  // Every factor below is bounded (ModelConfig::validate, EngineConfig::validate), so these
  // int64 products cannot overflow; the byte sums saturate.
  p.max_context = resolved_context(model, config);
  const bool fp8 = config.kv_dtype == KvDtype::kFp8;
  p.kv_dtype = config.kv_dtype;
  p.kv_bytes_per_token = int64_t(KvCache::bytes_per_token(local, config.dtype, layers, fp8));
  p.kv_bytes_per_page =
      int64_t(KvCache::bytes_per_page(local, config.page_size, config.dtype, layers, fp8,
                                      config.quest_bounds));
  p.weight_bytes = model::llama_weight_bytes(model, config.dtype, &shard);
  p.workspace_bytes =
      sat_add(model::LlamaWorkspace::bytes_for(local, workspace_shape(model, config)),
              state_bytes(model, config));
  if (job) {
    p.workspace_bytes = sat_add(p.workspace_bytes, model::ParallelBuffers::bytes_for(
                                                       parallel_shape(model, shard, config)));
  }
  int64_t pages = resolved_pages(model, config);
  if (config.kv_capacity == 0 && available_bytes > 0) {
    const double spare =
        0.92 * double(available_bytes) - double(p.weight_bytes) - double(p.workspace_bytes);
    // - the padding page; never below one page (plan_fits then says what the minimum needs).
    const double fit = spare / double(p.kv_bytes_per_page) - 1.0;
    if (fit < double(pages)) {
      pages = std::max<int64_t>(fit > 1.0 ? int64_t(fit) : 1, 1);
      p.kv_capped = true;
    }
  }
  p.kv_pages = pages;
  p.kv_capacity_tokens = pages * config.page_size;
  p.kv_bytes = KvCache::bytes_for(local, kv_cache_config(config, shard, pages));
  return p;
}

}  // namespace

MemoryPlan plan_memory(const model::ModelConfig& model, const EngineConfig& config,
                       size_t available_bytes) {
  return plan_shard(model, config, available_bytes, engine_shard(model, config),
                    config.distributed != nullptr);
}

MemoryPlan plan_memory(const model::ModelConfig& model, const EngineConfig& config,
                       size_t available_bytes, const model::ModelShard& shard) {
  return plan_shard(model, config, available_bytes, shard, /*job=*/true);
}

Status plan_fits(const model::ModelConfig& model, const EngineConfig& config, const MemoryPlan& p) {
  if (p.kv_pages >= INT32_MAX - 1) {
    return out_of_memory("a KV cache of " + str(p.kv_pages) + " pages (max_batch " +
                         str(config.max_batch) + " x max_context " + str(p.max_context) +
                         " tokens, page_size " + str(config.page_size) +
                         ") exceeds the i32 page ids; set kv_capacity");
  }
  const size_t total = p.total_bytes();
  if (p.available_bytes == 0 || total <= p.available_bytes) return ok_status();
  // Name the settings that size the largest part.
  std::string why;
  if (p.weight_bytes >= p.kv_bytes && p.weight_bytes >= p.workspace_bytes) {
    why = "the weights are the largest part (" + str(model.num_params()) + " parameters in " +
          dtype_name(p.dtype) + ")";
  } else if (p.kv_bytes >= p.workspace_bytes) {
    why = config.kv_capacity > 0
              ? "the KV cache is the largest part (kv_capacity " + str(config.kv_capacity) +
                    " tokens of " + str(p.kv_bytes_per_token) + " bytes)"
              : "the KV cache is the largest part (max_batch " + str(config.max_batch) +
                    " x max_context " + str(p.max_context) + " tokens of " +
                    str(p.kv_bytes_per_token) + " bytes)";
  } else {
    why = "the workspace is the largest part (sized by max_batch " + str(config.max_batch) +
          ", prefill_chunk " + str(config.prefill_chunk) + " and max_context " +
          str(p.max_context) + ")";
  }
  return out_of_memory("does not fit in " + p.device_name + " memory (" + dtype_name(p.dtype) +
                       "): it needs " + bytes_string(total) + " (weights " +
                       human_bytes(p.weight_bytes) + ", KV cache " + human_bytes(p.kv_bytes) +
                       " for " + str(p.kv_capacity_tokens) + " tokens, workspace " +
                       human_bytes(p.workspace_bytes) + ") and " + bytes_string(p.available_bytes) +
                       " are available; " + why);
}

Engine::~Engine() {
  if (dist_ != nullptr && dist_->rank() == 0) shutdown();
  graphs_.clear();
  if (config_.device.kind == DeviceKind::kCuda) {
    pinned_free(command_host_);
    pinned_free(sampled_host_);
    if (owns_stream_) stream_destroy(stream_);
  } else {
    std::free(command_host_);
    std::free(sampled_host_);
  }
}

namespace {

// A tensor every shard holds (the embedding exists on the first stage only).
const TensorView& some_weight(const model::LlamaWeights& w) {
  if (w.embed.data != nullptr) return w.embed;
  for (const model::LayerWeights& l : w.layers) {
    if (l.wq.data != nullptr) return l.wq;
  }
  return w.final_norm;
}

}  // namespace

Status Engine::create_local(const model::ModelConfig& model, model::LlamaWeights weights,
                            const EngineConfig& config, std::unique_ptr<Engine>* out) {
  TIDAL_RETURN_IF_ERROR(model.validate());
  TIDAL_RETURN_IF_ERROR(config.validate());
  const TensorView& any = some_weight(weights);
  if (any.device.kind != config.device.kind || any.dtype != config.dtype) {
    return invalid_argument(std::string("the weights are ") + dtype_name(any.dtype) + " on the " +
                            (any.on_cpu() ? "CPU" : "GPU") + "; the engine runs " +
                            dtype_name(config.dtype) + " on the " +
                            (config.device.kind == DeviceKind::kCpu ? "CPU" : "GPU"));
  }
  std::unique_ptr<Engine> e(new Engine());
  e->model_ = model;
  e->config_ = config;
  e->shard_ = model::whole_model(model);
  if (config.distributed != nullptr) {
    e->dist_ = config.distributed;
    TIDAL_RETURN_IF_ERROR(config.distributed->validate());
    TIDAL_RETURN_IF_ERROR(model::make_model_shard(model, config.distributed->parallel,
                                                  config.distributed->coords(), &e->shard_));
  }
  e->local_ = e->shard_.local(model);
  if (config.device.kind == DeviceKind::kCuda) {
    TIDAL_RETURN_IF_ERROR(set_cuda_device(config.device.index));
  }
  // Weights are already resident: plan against what is left plus what they take.
  const size_t available = available_memory(config.device);
  const size_t with_weights = available > 0 ? sat_add(available, weights.bytes()) : 0;
  e->plan_ = plan_memory(model, config, with_weights);
  if (e->plan_.max_context > model.max_position_embeddings) {
    return invalid_argument("max_context " + str(e->plan_.max_context) +
                            " exceeds the model's context of " +
                            str(model.max_position_embeddings) + " tokens");
  }
  TIDAL_RETURN_IF_ERROR(plan_fits(model, config, e->plan_).with_context(model.name));
  e->weights_ = std::move(weights);
  *out = std::move(e);
  return ok_status();
}

Status Engine::allocate() {
  // First, while every rank is still here: the parallel buffers' registration is collective over
  // the TP group, and a rank that failed an allocation before it would leave for agree_status's
  // collective while its peers wait in the registration.
  if (dist_ != nullptr) {
    TIDAL_RETURN_IF_ERROR(
        model::ParallelBuffers::create(parallel_shape(model_, shard_, config_), dist_->tp, &pbuf_));
  }
  TIDAL_RETURN_IF_ERROR(KvCache::create(
      local_, kv_cache_config(config_, shard_, plan_.kv_capacity_tokens / config_.page_size),
      &kv_));
  TIDAL_RETURN_IF_ERROR(
      model::LlamaWorkspace::create(local_, workspace_shape(model_, config_), &ws_));
  max_pages_ = max_pages(model_, config_);
  row_used_.assign(size_t(config_.max_batch), false);
  return init_device_state();
}

Status Engine::create(const model::ModelConfig& model, model::LlamaWeights weights,
                      const EngineConfig& config, std::unique_ptr<Engine>* out) {
  std::unique_ptr<Engine> e;
  const Status local = create_local(model, std::move(weights), config, &e);
  if (config.distributed == nullptr) {
    TIDAL_RETURN_IF_ERROR(local);
    TIDAL_RETURN_IF_ERROR(e->allocate());
    *out = std::move(e);
    return ok_status();
  }
  // Every step below that can fail on one rank is followed by an agreement, so no rank is left
  // waiting in a collective that a failed rank will never join.
  parallel::Communicator& world = *config.distributed->world;
  TIDAL_RETURN_IF_ERROR(agree_status(world, local));
  TIDAL_RETURN_IF_ERROR(e->init_distributed());  // agrees on its own failures
  *out = std::move(e);
  return ok_status();
}

Status Engine::init_device_state() {
  const bool cuda = config_.device.kind == DeviceKind::kCuda;
  if (cuda) {
    TIDAL_RETURN_IF_ERROR(stream_create(&stream_));
    owns_stream_ = true;
  }
  step_ = std::make_unique<StepPlan>(step_capacity(model_, config_));
  const size_t plan_bytes = step_->bytes();
  // The control broadcast of a distributed step is one buffer: a command, then the plan.
  const size_t command_bytes = kCommandBytes + plan_bytes;
  const int64_t rows = config_.max_batch + 1;
  TIDAL_RETURN_IF_ERROR(Arena::create(state_bytes(model_, config_), "block tables and step plan",
                                      config_.device, &state_));
  BumpAllocator alloc = state_.allocator();
  block_tables_ = alloc.allocate(DType::kI32, {rows, max_pages_});
  const TensorView plan_copy = alloc.allocate(DType::kU8, {int64_t(plan_bytes)});
  const size_t sampled_bytes = size_t(step_->capacity().max_logits) * 4;
  if (cuda) {
    TIDAL_RETURN_IF_ERROR(pinned_malloc(command_bytes, &command_host_));
    plan_host_ = static_cast<uint8_t*>(command_host_) + kCommandBytes;
    void* sampled = nullptr;
    TIDAL_RETURN_IF_ERROR(pinned_malloc(sampled_bytes, &sampled));
    sampled_host_ = static_cast<int32_t*>(sampled);
    plan_device_ = plan_copy.data;
  } else {
    command_host_ = std::calloc(command_bytes, 1);
    sampled_host_ = static_cast<int32_t*>(std::malloc(sampled_bytes));
    if (command_host_ == nullptr || sampled_host_ == nullptr) {
      return out_of_memory("cannot allocate the step plan");
    }
    plan_host_ = static_cast<uint8_t*>(command_host_) + kCommandBytes;
    plan_device_ = plan_host_;
  }
  step_->bind(plan_host_);
  // Every entry starts on the padding page: a graph bucket's padding tokens (row max_batch,
  // position 0) and any entry not yet uploaded point at a page no sequence owns.
  const std::vector<int32_t> tables(size_t(rows * max_pages_), kv_.padding_page());
  copy_bytes(block_tables_.data, config_.device, tables.data(), Device{}, tables.size() * 4,
             stream_);
  stream_synchronize(stream_);
  for (int64_t b = 1; b < config_.max_batch; b *= 2) buckets_.push_back(b);
  buckets_.push_back(config_.max_batch);
  step_seqs_.reserve(size_t(config_.max_batch));
  pages_before_.reserve(size_t(config_.max_batch));
  return ok_status();
}

Status Engine::load(const std::string& dir, const EngineConfig& config,
                    std::unique_ptr<Engine>* out) {
  model::ModelConfig model;
  model::LlamaWeights weights;
  // Everything here may fail on one rank alone (a file, a device): distributed, the ranks agree
  // on the outcome before any collective.
  auto load_local = [&]() -> Status {
    TIDAL_RETURN_IF_ERROR(config.validate());
    TIDAL_RETURN_IF_ERROR(model::load_model_config(dir, &model));
    model::ModelShard shard = model::whole_model(model);
    if (config.distributed != nullptr) {
      TIDAL_RETURN_IF_ERROR(config.distributed->validate());
      TIDAL_RETURN_IF_ERROR(model::make_model_shard(model, config.distributed->parallel,
                                                    config.distributed->coords(), &shard));
    }
    // Refuse what cannot fit before reading a byte of the checkpoint.
    TIDAL_RETURN_IF_ERROR(check_fits(model, config).with_context(dir));
    std::unique_ptr<model::SafetensorsCheckpoint> ckpt;
    TIDAL_RETURN_IF_ERROR(model::SafetensorsCheckpoint::open(dir, &ckpt));
    if (config.device.kind == DeviceKind::kCuda) {
      TIDAL_RETURN_IF_ERROR(set_cuda_device(config.device.index));
    }
    model::WeightPlacement placement;
    placement.dtype = config.dtype;
    placement.device = config.device;
    placement.shard = &shard;
    return model::load_llama_weights(model, *ckpt, &weights, placement).with_context(dir);
  };
  const Status st = load_local();
  if (config.distributed == nullptr) {
    TIDAL_RETURN_IF_ERROR(st);
  } else {
    TIDAL_CHECK(config.distributed->world != nullptr, "Engine::load: no world communicator");
    TIDAL_RETURN_IF_ERROR(agree_status(*config.distributed->world, st));
  }
  return create(model, std::move(weights), config, out);
}

Engine::Sequence* Engine::find(SeqId id) {
  auto it = seqs_.find(id);
  return it == seqs_.end() ? nullptr : &it->second;
}

const Engine::Sequence* Engine::find(SeqId id) const {
  auto it = seqs_.find(id);
  return it == seqs_.end() ? nullptr : &it->second;
}

model::AttentionStats Engine::stats(SeqId id) const {
  const Sequence* s = find(id);
  TIDAL_CHECK(s != nullptr, "Engine::stats: unknown sequence");
  model::AttentionStats st = s->stats;
  int64_t overlap[2] = {0, 0};  // position persistence, counted on the device
  if (dist_ != nullptr) {
    // Every rank counted the lists it holds; lists agreed over g ranks were counted g times.
    const_cast<Engine*>(this)->broadcast_command(Command::kStats);
    const std::vector<int64_t> sum = sum_overlap();
    const model::AttentionPolicy& p = s->options.attention;
    int64_t copies = 1;
    if (p.kind == model::AttentionKind::kTidal) {
      if (p.tidal.granularity == model::Granularity::kShared) copies = shard_.tp_size();
      if (p.tidal.granularity == model::Granularity::kPerKvHead) {
        copies = shard_.heads.kv_replicas;
      }
    }
    st.overlap_kept = sum[size_t(2 * s->row)] / copies;
    st.overlap_total = sum[size_t(2 * s->row + 1)] / copies;
    return st;
  }
  const TensorView row = ws_.overlap.select(s->row);
  copy_bytes(overlap, Device{}, row.data, row.device, sizeof(overlap), stream_);
  stream_synchronize(stream_);
  st.overlap_kept = overlap[0];
  st.overlap_total = overlap[1];
  return st;
}

void Engine::set_trace(SeqId id, std::vector<model::LayerTrace>* trace) {
  Sequence* s = find(id);
  TIDAL_CHECK(s != nullptr, "Engine::set_trace: unknown sequence");
  s->trace = trace;
}

Status Engine::read_kv(SeqId id, int64_t layer, int64_t position, std::vector<float>* key,
                       std::vector<float>* value) const {
  const Sequence* s = find(id);
  if (s == nullptr) return invalid_argument("unknown sequence " + str(id));
  if (!shard_.holds_layer(layer) || position < 0 || position >= s->cached) {
    return out_of_range("no cached K/V at layer " + str(layer) + ", position " + str(position) +
                        (shard_.holds_layer(layer) || layer < 0 || layer >= model_.num_layers
                             ? ""
                             : " on this rank (its stage holds other layers)"));
  }
  const model::KvLayer& kv = kv_.layers()[size_t(layer)];
  const int64_t page = s->block_table[size_t(position / kv_.page_size())];
  const int64_t n = local_.kv_dim();  // this rank's KV heads
  const DType dt = kv.k.dtype;
  std::vector<uint8_t> raw(size_t(n) * dtype_size(dt));
  for (auto [src, scales, dst] :
       {std::tuple{kv.k, kv.k_scale, key}, std::tuple{kv.v, kv.v_scale, value}}) {
    const TensorView row = src.select(page).select(position % kv_.page_size());
    copy_bytes(raw.data(), Device{}, row.data, row.device, raw.size(), stream_);
    stream_synchronize(stream_);
    dst->resize(size_t(n));
    if (kv_.fp8()) {  // codes times the rows' scales (one per KV head)
      const int64_t head_dim = local_.head_dim;
      const TensorView s = scales.select(page);  // [num_kv_heads, page_size]
      std::vector<float> page_scales(size_t(s.numel()));
      copy_bytes(page_scales.data(), Device{}, s.data, s.device,
                 page_scales.size() * sizeof(float), stream_);
      stream_synchronize(stream_);
      for (int64_t h = 0; h < n / head_dim; ++h) {
        kernels::dequantize_e4m3_row(
            raw.data() + h * head_dim,
            page_scales[size_t(h * kv_.page_size() + position % kv_.page_size())], head_dim,
            dst->data() + h * head_dim);
      }
      continue;
    }
    for (int64_t i = 0; i < n; ++i) (*dst)[size_t(i)] = load_f32(raw.data(), dt, i);
  }
  return ok_status();
}

int64_t Engine::length(SeqId id) const {
  auto it = seqs_.find(id);
  return it == seqs_.end() ? 0 : it->second.cached;
}

int64_t Engine::pages_for_next_token(SeqId id) const {
  const Sequence* s = find(id);
  TIDAL_CHECK(s != nullptr, "Engine::pages_for_next_token: unknown sequence");
  const int64_t need = (s->cached + 1 + kv_.page_size() - 1) / kv_.page_size();
  return std::max<int64_t>(0, need - int64_t(s->block_table.size()));
}

int64_t Engine::kv_tokens_in_use() const {
  return (kv_.num_pages() - kv_.free_pages()) * kv_.page_size();
}

Status Engine::add_sequence(const std::vector<int32_t>& prompt, SeqId* id) {
  return add_sequence(prompt, SequenceOptions(), id);
}

Status Engine::add_sequence(const std::vector<int32_t>& prompt,
                            const model::AttentionPolicy& policy, SeqId* id) {
  SequenceOptions options;
  options.attention = policy;
  return add_sequence(prompt, options, id);
}

Status Engine::validate_sequence(const std::vector<int32_t>& prompt,
                                 const SequenceOptions& options) const {
  const model::AttentionPolicy& policy = options.attention;
  TIDAL_RETURN_IF_ERROR(policy.validate(model_, config_.page_size));
  if (policy.kind == model::AttentionKind::kQuest && !config_.quest_bounds) {
    return invalid_argument(
        "quest needs the KV cache's page bounds; this engine was made without them "
        "(EngineConfig::quest_bounds = false: tidal --no-quest-bounds)");
  }
  TIDAL_RETURN_IF_ERROR(options.sampling.validate());
  // A pass follows a decode step that leaves the sequence running: step context - 2 at the
  // latest (a prompt token first, and the step that fills the context is the last). A longer
  // interval would silently never correct anything.
  const int64_t last_pass = std::max<int64_t>(0, plan_.max_context - 2);
  if (policy.correction_interval > last_pass) {
    return invalid_argument(
        "correction_interval " + str(policy.correction_interval) +
        " never runs a pass in a context of " + str(plan_.max_context) +
        " tokens (a pass follows a decode step that is not a sequence's last): " +
        (last_pass > 0 ? "at most " + str(last_pass) + ", or 0 (off)" : "only 0 (off)"));
  }
  const int64_t budget = policy.kind == model::AttentionKind::kTidal   ? policy.tidal.budget
                         : policy.kind == model::AttentionKind::kQuest ? policy.quest.budget
                                                                       : 0;
  // A budget the lists cannot hold is refused, unless they hold every position of the context
  // (and Quest's page lists every page): then it selects everything, as the lists' own size
  // does, and decode tokens run with that (add_decode_token).
  const bool whole_context =
      ws_.shape.max_budget >= plan_.max_context &&
      (policy.kind != model::AttentionKind::kQuest ||
       ws_.pages.size(2) >= ceil_div(plan_.max_context, config_.page_size));
  if (budget > ws_.shape.max_budget && !whole_context) {
    return invalid_argument("budget " + str(budget) + " exceeds the engine's max_budget " +
                            str(ws_.shape.max_budget) + " (tidal serve --max-budget raises it)");
  }
  if (prompt.empty()) return invalid_argument("a prompt needs at least one token");
  for (int32_t t : prompt) {
    if (t < 0 || t >= model_.vocab) {
      return invalid_argument("prompt token id " + str(t) + " is outside the vocabulary [0, " +
                              str(model_.vocab) + ")");
    }
  }
  const int64_t n = int64_t(prompt.size());
  if (n > plan_.max_context) {
    return out_of_range("prompt of " + str(n) + " tokens exceeds the context of " +
                        str(plan_.max_context) + " tokens");
  }
  if (n > kv_.capacity_tokens()) {
    return out_of_memory("prompt of " + str(n) + " tokens exceeds the KV cache capacity of " +
                         str(kv_.capacity_tokens()) + " tokens");
  }
  return ok_status();
}

Status Engine::add_sequence(const std::vector<int32_t>& prompt, const SequenceOptions& options,
                            SeqId* id) {
  TIDAL_RETURN_IF_ERROR(validate_sequence(prompt, options));
  last_graph_ = nullptr;  // the sequences change: the last step is no longer replayable
  const model::AttentionPolicy& policy = options.attention;
  const int64_t n = int64_t(prompt.size());
  auto free_row = std::find(row_used_.begin(), row_used_.end(), false);
  if (free_row == row_used_.end()) {
    return unavailable("all " + str(config_.max_batch) + " sequence slots are in use");
  }
  Sequence seq;
  seq.tokens.reserve(size_t(plan_.max_context));  // decode steps append without reallocating
  seq.tokens = prompt;
  seq.block_table.reserve(size_t(max_pages_));
  seq.row = free_row - row_used_.begin();
  seq.options = options;
  seq.reselect = model::reselect_layers(policy, model_);
  TIDAL_RETURN_IF_ERROR(kv_.reserve(&seq.block_table, n));
  // The row's persistence counters start from zero for the new sequence (on every rank).
  const TensorView counters = ws_.overlap.select(seq.row);
  fill_bytes(counters.data, counters.device, 0, counters.nbytes(), stream_);
  if (dist_ != nullptr) broadcast_command(Command::kResetCounters, 0, seq.row);
  *free_row = true;
  *id = next_id_++;
  seqs_.emplace(*id, std::move(seq));
  return ok_status();
}

void Engine::release(SeqId id) {
  Sequence* s = find(id);
  if (s == nullptr) return;
  last_graph_ = nullptr;  // its pages may go to another sequence
  kv_.release(&s->block_table);
  row_used_[size_t(s->row)] = false;
  seqs_.erase(id);
}

void Engine::upload_pages(Sequence* s, int64_t end) {
  const int64_t need = ceil_div(end, config_.page_size);
  for (; s->pages_on_device < need; ++s->pages_on_device) {
    step_->add_page_update(int32_t(s->row), int32_t(s->pages_on_device),
                           s->block_table[size_t(s->pages_on_device)]);
  }
}

void Engine::add_sample_row(int32_t row, const Sequence* s) {
  SampleRow r;  // padding rows (s null) are greedy
  if (s != nullptr) {
    const SamplingParams& p = s->options.sampling;
    r.temperature = p.greedy() ? 0.0f : p.temperature;  // the kernels' greedy is T == 0
    r.top_k = p.top_k;
    r.top_p = p.top_p;
    r.min_p = p.min_p;
    r.seed = p.seed;
    r.counter = s->samples_drawn;
  }
  step_->add_logit_row(row, r);
}

// A decode token for `s` at position s->cached, with its role in every layer.
void Engine::add_decode_token(Sequence* s, int32_t token) {
  const model::AttentionPolicy& policy = s->options.attention;
  const int64_t position = s->cached, n = position + 1;
  DecodeToken t;
  t.token = token;
  t.position = int32_t(position);
  t.seq_row = int32_t(s->row);
  // Lists and heads are counted on this rank's shard (every rank's shard has the same counts).
  // A budget beyond what the lists hold covers the whole context (validate_sequence): the
  // lists' size selects the same, every position (Quest: every page).
  const int64_t width = ws_.shape.max_budget;
  if (policy.kind == model::AttentionKind::kTidal) {
    t.num_lists = int32_t(model::num_lists(policy.tidal.granularity, local_));
    t.budget = int32_t(std::min(policy.tidal.budget, width));
    if (dist_ != nullptr) t.agreement = list_agreement(policy);
  } else if (policy.kind == model::AttentionKind::kQuest) {
    t.num_lists = int32_t(local_.num_heads);
    t.budget = int32_t(std::min(policy.quest.budget, width));
    t.page_length = int32_t((n - 1) / config_.page_size + 1);
    t.page_budget = int32_t(std::min(policy.quest.budget / config_.page_size, ws_.pages.size(2)));
  }
  // Lists per query head under GQA: a lists-only layer's attention keeps its wave-filling splits
  // for them (kernels/decode_attention.h, head_lists).
  t.head_lists = t.num_lists > local_.num_kv_heads;
  upload_pages(s, n);
  const int64_t i = step_->add_decode(t);
  for (int64_t l = 0; l < model_.num_layers; ++l) {
    const model::LayerRole role = model::layer_role(policy, s->reselect, l);
    step_->set_role(i, l, token_role(role, l, policy.tidal.sparse_start));
  }
}

// KV rows each layer role reads for one decode token, from n, K and the policy alone
// (DESIGN.md §7: statistics are derived from the plan, never read back).
void Engine::count_decode_stats(Sequence* s) {
  const model::AttentionPolicy& policy = s->options.attention;
  model::AttentionStats& st = s->stats;
  const int64_t n = s->cached + 1, kvh = model_.num_kv_heads, page = config_.page_size;
  for (int64_t l = 0; l < model_.num_layers; ++l) {
    const model::LayerRole role = model::layer_role(policy, s->reselect, l);
    st.layer_steps[int(role)] += 1;
    switch (role) {
      case model::LayerRole::kDense:
      case model::LayerRole::kSelect: st.rows[int(role)] += n * kvh; break;
      case model::LayerRole::kSparse: {
        const int64_t lists = model::num_lists(policy.tidal.granularity, model_);
        const int64_t count = std::min(n, policy.tidal.budget);
        // Lists narrower than the KV heads (shared) are read once per KV head.
        st.rows[int(role)] += lists * count * (lists < kvh ? kvh / lists : 1);
        break;
      }
      case model::LayerRole::kQuest: {
        const int64_t pages = (n - 1) / page + 1;
        const int64_t chosen = std::min(pages, policy.quest.budget / page);
        st.rows[int(role)] += model_.num_heads * ((chosen - 1) * page + (n - 1) % page + 1);
        st.quest_metadata_rows += 2 * (pages - 1) * kvh;
        break;
      }
    }
  }
  st.decode_steps += 1;
}

// Non-finite logits (a NaN or an infinity: bad weights, an overflow) leave nothing to sample;
// sample_tokens marks the row, and the id comes back with the others, so checking costs nothing.
Status Engine::check_logits(int64_t row, const Sequence* s, int64_t position) const {
  if (sampled_host_[row] != kernels::kNonFiniteLogits) return ok_status();
  return internal_error("non-finite logits (NaN or infinity) at step " +
                        str(int64_t(s->samples_drawn)) + " of the generation (position " +
                        str(position) + "): the weights or activations overflowed");
}

Status Engine::dense_pass(Sequence* s, int64_t begin, int64_t end, TensorView logits,
                          int32_t* sampled, bool report) {
  const int64_t first = begin;
  report = report && progress_;
  if (report) progress_(0, end - first);
  while (begin < end) {
    const int64_t chunk = std::min(config_.prefill_chunk, end - begin);
    step_->clear();
    upload_pages(s, begin + chunk);
    step_->add_prefill(int32_t(s->row), int32_t(begin), s->tokens.data() + begin, chunk);
    const bool last = begin + chunk == end;
    const bool want = last && (logits.data != nullptr || sampled != nullptr);
    if (want) add_sample_row(int32_t(chunk - 1), s);
    step_seqs_.clear();
    run_step(last ? logits : TensorView());
    if (want) TIDAL_RETURN_IF_ERROR(check_logits(0, s, end - 1));
    if (want && sampled != nullptr) {
      *sampled = sampled_host_[0];
      s->samples_drawn += 1;
    }
    begin += chunk;
    if (report) progress_(begin - first, end - first);  // run_step has waited for the chunk
  }
  return ok_status();
}

Status Engine::prefill(SeqId id, TensorView logits, int32_t* sampled) {
  Sequence* s = find(id);
  if (s == nullptr) return invalid_argument("unknown sequence " + str(id));
  TIDAL_CHECK(logits.data == nullptr || (logits.rank == 1 && logits.size(0) == model_.vocab &&
                                         logits.dtype == DType::kF32 && logits.on_cpu()),
              "prefill: logits must be host f32 [vocab]");
  const int64_t total = int64_t(s->tokens.size());
  if (s->cached >= total) return invalid_argument("sequence " + str(id) + " is already prefilled");
  const TensorView rows =
      logits.data ? make_view(logits.data, DType::kF32, {1, model_.vocab}) : TensorView();
  const Status st = dense_pass(s, s->cached, total, rows, sampled, /*report=*/true);
  s->cached = total;  // the K/V are written either way
  return st.with_context("sequence " + str(id));
}

Status Engine::correct(SeqId id, int64_t num_tokens) {
  Sequence* s = find(id);
  if (s == nullptr) return invalid_argument("unknown sequence " + str(id));
  if (num_tokens < 1) return invalid_argument("a correction needs at least one token");
  // Nothing to recompute is refused, as 0 tokens are: it would count a pass of 0 tokens.
  if (s->cached == 0) {
    return invalid_argument("sequence " + str(id) +
                            " has nothing cached to correct (prefill it first)");
  }
  const int64_t n = std::min(num_tokens, s->cached);
  // Recomputing positions [cached - n, cached) writes their K/V again, now from dense attention
  // in every layer (each attends to the full cache before it, itself corrected first).
  // No logits are computed, so nothing can be non-finite here.
  TIDAL_CHECK(dense_pass(s, s->cached - n, s->cached, TensorView(), nullptr, false).ok(),
              "correct: a pass without logits failed");
  s->stats.correction_passes += 1;
  s->stats.correction_tokens += n;
  return ok_status();
}

Status Engine::decode(const std::vector<SeqId>& ids, const std::vector<int32_t>& tokens,
                      TensorView logits, std::vector<int32_t>* sampled) {
  if (ids.empty() || ids.size() != tokens.size()) {
    return invalid_argument("decode needs one token per sequence");
  }
  TIDAL_CHECK(logits.data == nullptr ||
                  (logits.rank == 2 && logits.size(0) == int64_t(ids.size()) &&
                   logits.size(1) == model_.vocab && logits.dtype == DType::kF32 &&
                   logits.on_cpu()),
              "decode: logits must be host f32 [num_seqs, vocab]");
  static const std::vector<StepChunk> no_chunks;
  TIDAL_RETURN_IF_ERROR(step(ids, tokens, no_chunks, logits, sampled));
  for (size_t i = 0; i < ids.size(); ++i) {
    const Sequence* s = find(ids[i]);
    TIDAL_RETURN_IF_ERROR(
        check_logits(int64_t(i), s, s->cached - 1).with_context("sequence " + str(ids[i])));
  }
  return ok_status();
}

void Engine::run_step(TensorView logits) {
  if (dist_ != nullptr) {
    run_step_distributed(logits);
    return;
  }
  const StepHeader& h = step_->header();
  const bool traced =
      rank_trace_ != nullptr || std::any_of(step_seqs_.begin(), step_seqs_.end(),
                                            [](const Sequence* s) { return s->trace != nullptr; });
  const bool bucket = std::binary_search(buckets_.begin(), buckets_.end(), int64_t(h.num_decode));
  const bool use_graph = config_.device.kind == DeviceKind::kCuda && config_.cuda_graphs &&
                         !traced && !attention_marker_ && h.num_decode > 0 &&
                         h.num_tokens == h.num_decode && bucket;
  last_graph_ = nullptr;
  if (use_graph) {
    last_graph_ =
        replay_or_capture(h.num_decode, step_->layer_ops(), {}, [this] { enqueue_step(); });
  } else {
    enqueue_step();
  }
  const int64_t rows = logits.data != nullptr ? logits.size(0) : 0;
  if (rows > 0) {
    TIDAL_CHECK(rows <= h.num_logits && logits.size(1) == model_.vocab,
                "run_step: more logit rows asked than computed");
    copy_bytes(logits.data, Device{}, ws_.logits.data, config_.device,
               size_t(rows * model_.vocab) * 4, stream_);
  }
  stream_synchronize(stream_);
}

Status Engine::replay_last_step(int64_t times) {
  if (times < 0 || times > kMaxGraphReplays) {
    return invalid_argument("replay_last_step: times " + str(times) + " is out of range [0, " +
                            str(kMaxGraphReplays) + "]");
  }
  if (dist_ != nullptr) {
    return invalid_argument("replay_last_step: not available under tensor / pipeline parallelism");
  }
  if (last_graph_ == nullptr) {
    return invalid_argument("replay_last_step: the last step did not run from a CUDA graph");
  }
  for (int64_t i = 0; i < times; ++i) last_graph_->launch(stream_);
  return ok_status();
}

const Graph* Engine::replay_or_capture(int64_t bucket, const uint8_t* need,
                                       std::vector<int64_t> sig,
                                       const std::function<void()>& enqueue) {
  // Graphs by batch bucket and by the layer ops: the optional launches (selection, Quest) each
  // layer needs and its attention's launch shape (lists-only layers, head lists).
  // Lengths, lists, roles and sampling settings are device data, so a graph replays any step
  // of its bucket whose layers need exactly its launches. Exactly, not "at most": a graph
  // holding a union of policies' launches would make every step pay the launches (empty ones
  // included) of policies it does not run, ~0.2-0.3 ms a step on an 8B model.
  std::vector<BucketGraph>& bucket_graphs = graphs_[bucket];
  const size_t num_layers = size_t(model_.num_layers);
  auto hit = std::find_if(bucket_graphs.begin(), bucket_graphs.end(), [&](const BucketGraph& g) {
    return g.sig == sig && std::equal(g.ops.begin(), g.ops.end(), need, need + num_layers);
  });
  if (hit != bucket_graphs.end()) {
    hit->last_used = ++graph_clock_;
    hit->graph.launch(stream_);
    par_.counters += hit->counted;
    return &hit->graph;
  }
  // The first step of a set runs eagerly (lazy library handles and algorithm choices are made
  // outside any capture) and is the real step; the capture only records (under TP/PP every rank
  // misses at the same step: their caches see the same plans).
  const model::AgreementCounters before = par_.counters;
  enqueue();
  if (bucket_graphs.size() >= kGraphsPerBucket) {
    bucket_graphs.erase(std::min_element(
        bucket_graphs.begin(), bucket_graphs.end(),
        [](const BucketGraph& a, const BucketGraph& b) { return a.last_used < b.last_used; }));
  }
  BucketGraph& g = bucket_graphs.emplace_back();
  g.ops.assign(need, need + num_layers);
  g.sig = std::move(sig);
  g.last_used = ++graph_clock_;
  g.counted = par_.counters - before;
  const model::AgreementCounters counted = par_.counters;
  Graph::begin_capture(stream_);
  enqueue();
  g.graph = Graph::end_capture(stream_);
  par_.counters = counted;  // the capture recorded, it ran nothing
  captures_ += 1;
  return &g.graph;
}

void Engine::enqueue_step() {
  const bool cuda = config_.device.kind == DeviceKind::kCuda;
  if (cuda) {
    copy_bytes(plan_device_, config_.device, plan_host_, Device{}, step_->bytes(), stream_);
  }
  model::ForwardBatch b = step_->batch(plan_device_, config_.device, block_tables_);
  const bool traced = std::any_of(step_seqs_.begin(), step_seqs_.end(),
                                  [](const Sequence* s) { return s->trace != nullptr; });
  // The plan's arrays on the host, for the whole-step trace.
  model::ForwardBatch host;
  if (rank_trace_ != nullptr) host = step_->batch(plan_host_, Device{}, TensorView());
  if (traced || attention_marker_ || rank_trace_ != nullptr) {
    b.attention_hook = [this, traced, &host](int64_t layer, bool after) {
      if (attention_marker_) attention_marker_(layer, after);
      if (after && rank_trace_ != nullptr) record_rank_traces(host, layer);
      if (traced && after) record_traces(layer);
    };
  }
  model::llama_forward(local_, weights_, b, kv_.layers(), ws_, stream_);
  const int64_t n = step_->header().num_logits;
  if (n == 0) return;
  const StepPlan::SampleViews sv = step_->samples(plan_device_, config_.device);
  kernels::SampleParams sp;
  sp.tokens = ws_.sampled.slice(0, n);
  sp.logits = ws_.logits.slice(0, n);
  sp.temperature = sv.temperature;
  sp.top_k = sv.top_k;
  sp.top_p = sv.top_p;
  sp.min_p = sv.min_p;
  sp.seeds = sv.seeds;
  sp.counters = sv.counters;
  kernels::sample_tokens(sp, ws_.scratch, stream_);
  copy_bytes(sampled_host_, Device{}, ws_.sampled.data, config_.device, size_t(n) * 4, stream_);
}

// The lists each traced decode token attended in `layer` (after the layer's selection).
void Engine::record_traces(int64_t layer) {
  const int64_t budget = ws_.lists.size(2), heads = local_.num_heads;
  std::vector<int32_t> counts(static_cast<size_t>(heads)), lists(static_cast<size_t>(heads * budget));
  for (size_t i = 0; i < step_seqs_.size(); ++i) {
    Sequence* s = step_seqs_[i];
    if (s->trace == nullptr) continue;
    const model::AttentionPolicy& policy = s->options.attention;
    model::LayerTrace tr;
    tr.position = s->cached;
    tr.layer = layer;
    tr.role = model::layer_role(policy, s->reselect, layer);
    if (tr.role != model::LayerRole::kDense) {
      const int64_t num = tr.role == model::LayerRole::kQuest
                              ? heads
                              : model::num_lists(policy.tidal.granularity, local_);
      const TensorView c = ws_.counts.select(int64_t(i)), l = ws_.lists.select(int64_t(i));
      copy_bytes(counts.data(), Device{}, c.data, c.device, size_t(num) * 4, stream_);
      copy_bytes(lists.data(), Device{}, l.data, l.device, size_t(num * budget) * 4, stream_);
      stream_synchronize(stream_);
      for (int64_t j = 0; j < num; ++j) {
        const int32_t* p = lists.data() + j * budget;
        tr.lists.emplace_back(p, p + counts[size_t(j)]);
      }
    }
    s->trace->push_back(std::move(tr));
  }
}

Status Engine::add_random_sequence(int64_t length, const SequenceOptions& options, uint64_t seed,
                                   SeqId* id) {
  if (length < 1) return invalid_argument("a sequence needs at least one token");
  // Checked before the token vector is sized: a huge length would throw from its allocation
  // (length_error, bad_alloc) instead of being refused as add_sequence refuses it.
  if (length > plan_.max_context) {
    return out_of_range("random sequence of " + str(length) + " tokens exceeds the context of " +
                        str(plan_.max_context) + " tokens");
  }
  TIDAL_RETURN_IF_ERROR(add_sequence(std::vector<int32_t>(size_t(length), 0), options, id));
  Sequence* s = find(*id);
  const int64_t chunk = config_.prefill_chunk;
  if (progress_) progress_(0, length);
  for (int64_t begin = 0; begin < length; begin += chunk) {
    const int64_t count = std::min(chunk, length - begin);
    step_->clear();
    upload_pages(s, begin + count);
    step_->add_prefill(int32_t(s->row), int32_t(begin), s->tokens.data() + begin, count);
    if (dist_ != nullptr) broadcast_command(Command::kRandomKv, 0, int64_t(seed), length);
    fill_random_kv(seed, length);
    if (progress_) progress_(begin + count, length);
  }
  s->cached = length;
  return ok_status();
}

void Engine::fill_random_kv(uint64_t seed, int64_t length) {
  if (config_.device.kind == DeviceKind::kCuda) {
    copy_bytes(plan_device_, config_.device, plan_host_, Device{}, step_->bytes(), stream_);
  }
  const model::ForwardBatch b = step_->batch(plan_device_, config_.device, block_tables_);
  const int64_t count = b.tokens.size(0);
  const int64_t begin =
      step_->batch(plan_host_, Device{}, TensorView()).positions.data_as<int32_t>()[0];
  kernels::block_table_update(b.block_tables, b.page_updates, stream_);
  const TensorView k = ws_.k.slice(0, count), v = ws_.v.slice(0, count);
  for (int64_t l = shard_.layer_begin; l < shard_.layer_end; ++l) {
    const model::KvLayer& cache = kv_.layers()[size_t(l)];
    const uint64_t stream_id = uint64_t(l) * uint64_t(length) + uint64_t(begin);
    kernels::fill_random(k, kernels::random_bits(seed, 2 * stream_id), 0.0f, 1.0f, stream_);
    kernels::fill_random(v, kernels::random_bits(seed, 2 * stream_id + 1), 0.0f, 1.0f, stream_);
    model::append_to_cache(cache, b, k, v, TensorView(), TensorView(), stream_);  // no RoPE
  }
  stream_synchronize(stream_);  // the plan buffer is rebuilt for the next chunk
}

}  // namespace tidal::engine
