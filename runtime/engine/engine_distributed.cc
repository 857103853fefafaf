// SPDX-License-Identifier: Apache-2.0
// The engine as one rank of a tensor x pipeline parallel job (DESIGN.md §3, §6). Rank 0 keeps the
// whole host side (sequences, pages, step plans, statistics) and broadcasts each step's plan;
// every rank runs its stage's layers on its heads; the last stage samples and sends the ids back
// to rank 0. A decode step with several sequences crosses the stages in micro-batches, so stage
// s works on one part while stage s + 1 works on the part before.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/sample_tokens.h"
#include "kernels/vocab_shard.h"
#include "runtime/engine/engine.h"

namespace tidal::engine {
namespace {

model::LayerRole layer_role_of(kernels::TokenRole r) {
  switch (r) {
    case kernels::TokenRole::kDense: return model::LayerRole::kDense;
    case kernels::TokenRole::kSelect:
    case kernels::TokenRole::kReselect: return model::LayerRole::kSelect;
    case kernels::TokenRole::kSparse: return model::LayerRole::kSparse;
    case kernels::TokenRole::kQuest: return model::LayerRole::kQuest;
  }
  return model::LayerRole::kDense;
}

// A setting every rank must share with rank 0, under the name errors give it, and how its value
// reads.
enum class Shown : uint8_t { kNumber, kReal, kDType, kKvDtype, kBool, kDevice, kRope };

struct SharedSetting {
  const char* name;
  int64_t value;
  Shown shown = Shown::kNumber;
};

int64_t bits_of(float f) {
  uint32_t u = 0;
  std::memcpy(&u, &f, sizeof(u));
  return int64_t(u);
}

std::string shown(Shown how, int64_t v) {
  switch (how) {
    case Shown::kNumber: break;
    case Shown::kReal: {
      const uint32_t u = uint32_t(v);
      float f = 0;
      std::memcpy(&f, &u, sizeof(f));
      char text[32];
      std::snprintf(text, sizeof(text), "%g", double(f));
      return text;
    }
    case Shown::kDType: return dtype_name(DType(v));
    case Shown::kKvDtype: return KvDtype(v) == KvDtype::kFp8 ? "fp8" : "the activations' dtype";
    case Shown::kBool: return v != 0 ? "true" : "false";
    case Shown::kDevice: return DeviceKind(v) == DeviceKind::kCuda ? "cuda" : "cpu";
    case Shown::kRope: return model::RopeType(v) == model::RopeType::kLlama3 ? "llama3" : "none";
  }
  return std::to_string(v);
}

// Rank 0 plans every step and the others run its plans, so these must match on every rank: the
// engine settings that size the step plan, block tables and workspace or choose the collectives'
// dtypes and launch path (EngineConfig's field names), then the model (config.json's keys): one
// of another shape sends buffers of other sizes, one of other numerics computes other tokens.
// kv_capacity may differ: the ranks keep the smallest. The same count on every rank.
std::vector<SharedSetting> shared_settings(const model::ModelConfig& m, const EngineConfig& c,
                                           int64_t max_context) {
  const bool graphs = c.device.kind == DeviceKind::kCuda && c.cuda_graphs;
  return {
      {"page_size", c.page_size},
      {"max_batch", c.max_batch},
      {"max_context", max_context},
      {"prefill_chunk", c.prefill_chunk},
      {"max_budget", c.max_budget},
      {"device", int64_t(c.device.kind), Shown::kDevice},
      {"dtype", int64_t(c.dtype), Shown::kDType},
      {"kv_dtype", int64_t(c.kv_dtype), Shown::kKvDtype},
      {"quest_bounds", c.quest_bounds, Shown::kBool},
      {"cuda_graphs", graphs, Shown::kBool},
      {"the model's num_hidden_layers", m.num_layers},
      {"the model's hidden_size", m.hidden},
      {"the model's intermediate_size", m.inter},
      {"the model's num_attention_heads", m.num_heads},
      {"the model's num_key_value_heads", m.num_kv_heads},
      {"the model's head_dim", m.head_dim},
      {"the model's vocab_size", m.vocab},
      {"the model's max_position_embeddings", m.max_position_embeddings},
      {"the model's tie_word_embeddings", m.tie_word_embeddings, Shown::kBool},
      {"the model's rms_norm_eps", bits_of(m.rms_norm_eps), Shown::kReal},
      {"the model's rope_theta", bits_of(m.rope.theta), Shown::kReal},
      {"the model's rope_scaling", int64_t(m.rope.type), Shown::kRope},
      {"the model's rope_scaling factor", bits_of(m.rope.factor), Shown::kReal},
      {"the model's rope_scaling low_freq_factor", bits_of(m.rope.low_freq_factor), Shown::kReal},
      {"the model's rope_scaling high_freq_factor", bits_of(m.rope.high_freq_factor), Shown::kReal},
      {"the model's rope_scaling original_max_position_embeddings",
       m.rope.original_max_position_embeddings},
      {"the model's torch_dtype", int64_t(m.dtype), Shown::kDType},
  };
}

}  // namespace

Status Engine::init_distributed() {
  parallel::Communicator& world = *dist_->world;
  // Every rank reads rank 0's plans, so their settings and models must match; and one KV
  // capacity on every rank: block tables hold rank 0's pages.
  const std::vector<SharedSetting> settings = shared_settings(model_, config_, plan_.max_context);
  const int64_t row = 1 + int64_t(settings.size());  // this rank's pages, then its settings
  std::vector<int64_t> mine(size_t(row), plan_.kv_capacity_tokens / config_.page_size);
  for (size_t i = 0; i < settings.size(); ++i) mine[i + 1] = settings[i].value;
  std::vector<int64_t> all(size_t(row * world.size()));
  world.all_gather(make_view(all.data(), DType::kI64, {row * world.size()}),
                   make_view(mine.data(), DType::kI64, {row}));
  for (size_t i = 0; i < settings.size(); ++i) {
    for (int r = 1; r < world.size(); ++r) {
      const int64_t theirs = all[size_t(r * row) + i + 1], first = all[i + 1];
      if (theirs == first) continue;
      const SharedSetting& s = settings[i];
      return invalid_argument("ranks differ in " + std::string(s.name) + ": rank 0 has " +
                              shown(s.shown, first) + ", rank " + std::to_string(r) + " has " +
                              shown(s.shown, theirs) +
                              "; every rank must be given the same model and settings");
    }
  }
  int64_t pages = mine[0];
  for (int r = 0; r < world.size(); ++r) pages = std::min(pages, all[size_t(r * row)]);
  if (pages < mine[0]) {
    // The plan this rank would make for that capacity (its pages, KV bytes with the cache's FP8
    // scales and Quest bounds as allocate() makes it), against the same memory.
    EngineConfig capped = config_;
    capped.kv_capacity = pages * config_.page_size;
    plan_ = plan_memory(model_, capped, plan_.available_bytes, shard_);
    plan_.kv_capped = true;
  }
  TIDAL_RETURN_IF_ERROR(agree_status(world, allocate()));
  // A KV head replicated over ranks: those ranks agree on its per-KV-head lists.
  if (shard_.heads.kv_replicas > 1) {
    kv_group_ = dist_->tp->split(int(shard_.heads.kv_heads.begin), shard_.coords.tp_rank);
  }
  par_.shard = shard_;
  par_.tp = dist_->tp;
  par_.pp = dist_->pp;
  par_.kv_group = kv_group_.get();
  par_.buffers = &pbuf_;
  ranks_ready_ = true;
  return ok_status();
}

uint8_t Engine::list_agreement(const model::AttentionPolicy& policy) const {
  using model::ListAgreement;
  if (policy.kind != model::AttentionKind::kTidal) return uint8_t(ListAgreement::kNone);
  const bool exact = policy.tidal.agreement == model::Agreement::kExact;
  const model::Granularity g = policy.tidal.granularity;
  if (g == model::Granularity::kShared && shard_.tp_size() > 1) {
    return uint8_t(exact ? ListAgreement::kExactTp : ListAgreement::kApproxTp);
  }
  if (g == model::Granularity::kPerKvHead && shard_.heads.kv_replicas > 1) {
    return uint8_t(exact ? ListAgreement::kExactKvGroup : ListAgreement::kApproxKvGroup);
  }
  return uint8_t(ListAgreement::kNone);
}

void Engine::broadcast_command(Command command, int32_t logit_rows, int64_t a0, int64_t a1) {
  TIDAL_CHECK(dist_ != nullptr && dist_->rank() == 0, "broadcast_command: rank 0 only");
  CommandHeader h;
  h.command = int32_t(command);
  h.logit_rows = logit_rows;
  h.args[0] = a0;
  h.args[1] = a1;
  std::memcpy(command_host_, &h, sizeof(h));
  dist_->world->broadcast(
      make_view(command_host_, DType::kU8, {int64_t(kCommandBytes + step_->bytes())}), 0);
}

void Engine::shutdown() {
  if (dist_ == nullptr || dist_->rank() != 0 || !ranks_ready_ || shut_down_) return;
  broadcast_command(Command::kShutdown);
  shut_down_ = true;
}

Status Engine::serve() {
  TIDAL_CHECK(dist_ != nullptr && dist_->rank() != 0,
              "Engine::serve: for the ranks other than 0 of a distributed engine");
  const TensorView buffer =
      make_view(command_host_, DType::kU8, {int64_t(kCommandBytes + step_->bytes())});
  for (;;) {
    dist_->world->broadcast(buffer, 0);
    CommandHeader h;
    std::memcpy(&h, command_host_, sizeof(h));
    switch (Command(h.command)) {
      case Command::kStep: execute_step(h.logit_rows, h.args[0], h.args[1] != 0); break;
      case Command::kRandomKv: fill_random_kv(uint64_t(h.args[0]), h.args[1]); break;
      case Command::kStats: sum_overlap(); break;
      case Command::kResetCounters: {
        const TensorView row = ws_.overlap.select(h.args[0]);
        fill_bytes(row.data, row.device, 0, row.nbytes(), stream_);
        stream_synchronize(stream_);
        break;
      }
      case Command::kShutdown: return ok_status();
      default: TIDAL_CHECK(false, "Engine::serve: unknown command " + std::to_string(h.command));
    }
  }
}

int64_t Engine::micro_batches(int64_t num_decode, bool decode_only, bool want_logits,
                              bool traced) const {
  if (dist_ == nullptr || shard_.parallel.pp_size < 2 || !decode_only || num_decode < 2 ||
      want_logits || traced || attention_marker_) {
    return 1;
  }
  return std::min<int64_t>(shard_.parallel.pp_size, num_decode);
}

void Engine::run_step_distributed(TensorView logits) {
  const int64_t n = step_->header().num_logits;
  const int64_t rows = logits.data != nullptr ? logits.size(0) : 0;
  TIDAL_CHECK(rows <= n && (rows == 0 || logits.size(1) == model_.vocab),
              "run_step: more logit rows asked than computed");
  // Rank 0 decides the micro-batches for every rank.
  const StepHeader& h = step_->header();
  const bool traced = std::any_of(step_seqs_.begin(), step_seqs_.end(),
                                  [](const Sequence* s) { return s->trace != nullptr; });
  const int64_t parts = micro_batches(h.num_decode, h.num_tokens == h.num_decode, rows > 0, traced);
  // Whether the ranks may replay graphs this step: rank 0's traces and markers (the benchmarks'
  // breakdown step) need eager launches, and every rank must take the same path (capturing a
  // collective registers its buffers, which NCCL asks of every rank alike or none).
  const bool graphs = !traced && !attention_marker_ && !par_.marker;
  broadcast_command(Command::kStep, int32_t(rows), parts, graphs ? 1 : 0);
  execute_step(int32_t(rows), parts, graphs);
  if (n > 0) {
    copy_bytes(sampled_host_, Device{}, pbuf_.sampled.data, config_.device, size_t(n) * 4, stream_);
  }
  if (rows > 0) {
    copy_bytes(logits.data, Device{}, pbuf_.logits.data, config_.device,
               size_t(rows * model_.vocab) * 4, stream_);
  }
  stream_synchronize(stream_);
}

void Engine::execute_step(int32_t logit_rows, int64_t parts, bool graphs_allowed) {
  const StepHeader h = step_->header();
  const model::ForwardBatch host = step_->batch(plan_host_, Device{}, TensorView());
  const int64_t d = h.num_decode, n = h.num_logits;
  TIDAL_CHECK(parts == 1 || (h.num_tokens == d && parts <= d && logit_rows == 0),
              "execute_step: micro-batches split decode-only steps");
  // A graph only where every rank takes one: the same plan on every rank, rank 0's verdict on
  // its traces and markers (graphs_allowed), and rank traces, which tests set on every rank alike.
  std::vector<int64_t> sig;
  const bool graph = graphs_allowed && config_.device.kind == DeviceKind::kCuda &&
                     config_.cuda_graphs && parts == 1 && d > 0 && h.num_tokens == d &&
                     std::binary_search(buckets_.begin(), buckets_.end(), d) &&
                     rank_trace_ == nullptr && model::launch_signature(par_, host, &sig);
  if (graph) {
    // The sampling path is decided on the host too (sample_part), over n rows.
    const float* t = step_->samples(plan_host_, Device{}).temperature.data_as<float>();
    sig.push_back(std::all_of(t, t + n, [](float x) { return x == 0.0f; }));
    sig.push_back(logit_rows);
    sig.push_back(n);
    replay_or_capture(d, step_->layer_ops(), std::move(sig),
                      [&] { enqueue_parts(logit_rows, parts, host); });
  } else {
    enqueue_parts(logit_rows, parts, host);
  }
  const int pp = shard_.parallel.pp_size;
  // The ids (and the logits rank 0 asked for) travel from the last stage's first TP rank.
  if (pp > 1 && n > 0 && shard_.coords.tp_rank == 0) {
    if (shard_.last_stage()) {
      dist_->pp->send(pbuf_.sampled.slice(0, n), 0, stream_);
      if (logit_rows > 0) dist_->pp->send(pbuf_.logits.slice(0, logit_rows), 0, stream_);
    } else if (shard_.first_stage()) {
      dist_->pp->recv(pbuf_.sampled.slice(0, n), pp - 1, stream_);
      if (logit_rows > 0) dist_->pp->recv(pbuf_.logits.slice(0, logit_rows), pp - 1, stream_);
    }
  }
  // The next broadcast overwrites the plan the device may still be copying.
  stream_synchronize(stream_);
}

void Engine::enqueue_parts(int32_t logit_rows, int64_t parts, const model::ForwardBatch& host) {
  const StepHeader h = step_->header();
  if (config_.device.kind == DeviceKind::kCuda) {
    copy_bytes(plan_device_, config_.device, plan_host_, Device{}, step_->bytes(), stream_);
  }
  model::ForwardBatch b = step_->batch(plan_device_, config_.device, block_tables_);
  b.host = &host;
  const int64_t d = h.num_decode, n = h.num_logits;
  for (int64_t p = 0; p < parts; ++p) {
    // Part p: decode tokens [begin, end) (all of the step when there is one part).
    const int64_t begin = d * p / parts, end = parts == 1 ? h.num_tokens : d * (p + 1) / parts;
    model::ForwardBatch part = parts == 1 ? b : model::decode_slice(b, begin, end);
    const model::ForwardBatch part_host = parts == 1 ? host : model::decode_slice(host, begin, end);
    part.host = &part_host;
    const bool traced = !step_seqs_.empty() &&
                        std::any_of(step_seqs_.begin(), step_seqs_.end(),
                                    [](const Sequence* s) { return s->trace != nullptr; });
    if (traced || attention_marker_ || rank_trace_ != nullptr) {
      part.attention_hook = [this, traced, &part_host](int64_t layer, bool after) {
        if (attention_marker_) attention_marker_(layer, after);
        if (!after) return;
        if (traced) record_traces(layer);  // rank 0, one part
        if (rank_trace_ != nullptr) record_rank_traces(part_host, layer);
      };
    }
    model::llama_forward(local_, weights_, part, kv_.layers(), ws_, stream_, &par_);
    if (shard_.last_stage() && n > 0) {
      sample_part(parts == 1 ? 0 : begin, parts == 1 ? n : end - begin, logit_rows > 0);
    }
  }
}

void Engine::sample_part(int64_t begin, int64_t count, bool want_logits) {
  const TensorView local = ws_.logits.slice(0, count);  // [count, vocab_shard]
  const TensorView out = pbuf_.sampled.slice(begin, begin + count);
  const StepPlan::SampleViews sv = step_->samples(plan_device_, config_.device);
  kernels::SampleParams sp;
  sp.tokens = out;
  sp.temperature = sv.temperature.slice(begin, begin + count);
  sp.top_k = sv.top_k.slice(begin, begin + count);
  sp.top_p = sv.top_p.slice(begin, begin + count);
  sp.min_p = sv.min_p.slice(begin, begin + count);
  sp.seeds = sv.seeds.slice(begin, begin + count);
  sp.counters = sv.counters.slice(begin, begin + count);
  const TensorView whole = pbuf_.logits.slice(begin, begin + count);  // [count, vocab]
  if (!shard_.vocab_split) {
    sp.logits = local;
    kernels::sample_tokens(sp, ws_.scratch, stream_);
    if (want_logits) copy_view(whole, local, stream_);
    return;
  }
  parallel::Communicator& tp = *dist_->tp;
  const int64_t shard = local.size(1);
  const float* temperature = step_->samples(plan_host_, Device{}).temperature.data_as<float>();
  const bool greedy = std::all_of(temperature + begin, temperature + begin + count,
                                  [](float t) { return t == 0.0f; });
  if (greedy && !want_logits) {
    // Greedy needs only each rank's best (value, id): 8 bytes a row, not the logits.
    const TensorView pairs = pbuf_.pairs.slice(0, count);
    kernels::argmax_shard(pairs, local, shard_.vocab.begin, stream_);
    tp.all_gather(
        make_view(pbuf_.all_pairs.data, DType::kI32, {tp.size() * count, 2}, config_.device), pairs,
        stream_);
    kernels::argmax_merge(
        out, make_view(pbuf_.all_pairs.data, DType::kI32, {tp.size(), count, 2}, config_.device),
        stream_);
    return;
  }
  // Sampling with a temperature (or logits wanted back): gather the whole rows.
  const TensorView shards =
      make_view(pbuf_.shard_logits.data, DType::kF32, {tp.size() * count, shard}, config_.device);
  tp.all_gather(shards, local, stream_);
  for (int r = 0; r < tp.size(); ++r) {
    for (int64_t i = 0; i < count; ++i) {
      copy_bytes(static_cast<float*>(whole.select(i).data) + r * shard, config_.device,
                 shards.select(r * count + i).data, config_.device, size_t(shard) * 4, stream_);
    }
  }
  sp.logits = whole;
  kernels::sample_tokens(sp, pbuf_.scratch, stream_);
}

std::vector<int64_t> Engine::sum_overlap() const {
  std::vector<int64_t> sum(size_t(ws_.overlap.numel()));
  copy_bytes(sum.data(), Device{}, ws_.overlap.data, ws_.overlap.device, ws_.overlap.nbytes(),
             stream_);
  stream_synchronize(stream_);
  dist_->world->all_reduce(make_view(sum.data(), DType::kI64, {int64_t(sum.size())}));
  return sum;
}

// Every decode token's lists after `layer` (a held layer), as this rank sees them.
void Engine::record_rank_traces(const model::ForwardBatch& host, int64_t layer) {
  const int64_t budget = ws_.lists.size(2), heads = local_.num_heads;
  std::vector<int32_t> counts(static_cast<size_t>(heads));
  std::vector<int32_t> lists(static_cast<size_t>(heads * budget));
  for (int64_t t = 0; t < host.num_decode; ++t) {
    model::LayerTrace tr;
    tr.position = host.positions.data_as<int32_t>()[t];
    tr.layer = layer;
    tr.role = layer_role_of(
        kernels::TokenRole(host.roles.data_as<uint8_t>()[layer * host.roles.stride[0] + t]));
    if (tr.role != model::LayerRole::kDense) {
      const int64_t num = host.num_lists.data_as<int32_t>()[t];
      const TensorView c = ws_.counts.select(t), l = ws_.lists.select(t);
      copy_bytes(counts.data(), Device{}, c.data, c.device, size_t(num) * 4, stream_);
      copy_bytes(lists.data(), Device{}, l.data, l.device, size_t(num * budget) * 4, stream_);
      stream_synchronize(stream_);
      for (int64_t j = 0; j < num; ++j) {
        const int32_t* p = lists.data() + j * budget;
        tr.lists.emplace_back(p, p + counts[size_t(j)]);
      }
    }
    rank_trace_->push_back(std::move(tr));
  }
}

}  // namespace tidal::engine
