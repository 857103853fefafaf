// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/engine.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "model/safetensors.h"

namespace tidal::engine {
namespace {

int64_t resolved_context(const model::ModelConfig& m, const EngineConfig& c) {
  return c.max_context > 0 ? c.max_context : m.max_position_embeddings;
}

int64_t resolved_capacity(const model::ModelConfig& m, const EngineConfig& c) {
  return c.kv_capacity > 0 ? c.kv_capacity : c.max_batch * resolved_context(m, c);
}

std::string str(int64_t v) { return std::to_string(v); }

model::WorkspaceShape workspace_shape(const model::ModelConfig& m, const EngineConfig& c) {
  model::WorkspaceShape s;
  s.max_tokens = std::max(c.prefill_chunk, c.max_batch);
  s.max_seqs = c.max_batch;
  s.max_context = resolved_context(m, c);
  s.max_budget = std::min(c.max_budget, s.max_context);
  s.page_size = c.page_size;
  return s;
}

std::string gib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", double(bytes) / double(1ull << 30));
  return buf;
}

}  // namespace

Status EngineConfig::validate() const {
  if (page_size < 1) return invalid_argument("page_size must be >= 1 (got " + str(page_size) + ")");
  if (max_batch < 1) return invalid_argument("max_batch must be >= 1 (got " + str(max_batch) + ")");
  if (max_context < 0) return invalid_argument("max_context must be >= 0 (0: the model's)");
  if (kv_capacity < 0) return invalid_argument("kv_capacity must be >= 0 (0: planned)");
  if (prefill_chunk < 1) return invalid_argument("prefill_chunk must be >= 1");
  if (max_budget < 2) return invalid_argument("max_budget must be >= 2");
  return ok_status();
}

MemoryPlan plan_memory(const model::ModelConfig& model, const EngineConfig& config,
                       size_t available_bytes) {
  MemoryPlan p;
  p.max_context = resolved_context(model, config);
  p.kv_bytes_per_token = 2 * model.num_layers * model.kv_dim() * int64_t(sizeof(float));
  p.weight_bytes = model::llama_weight_bytes(model);
  p.workspace_bytes = model::LlamaWorkspace::bytes_for(model, workspace_shape(model, config));
  int64_t pages = (resolved_capacity(model, config) + config.page_size - 1) / config.page_size;
  if (config.kv_capacity == 0 && available_bytes > 0) {
    const double spare =
        0.9 * double(available_bytes) - double(p.weight_bytes) - double(p.workspace_bytes);
    // A page: page_size tokens of K and V, plus its two Quest bound rows per layer and KV head.
    const int64_t bytes_per_page =
        p.kv_bytes_per_token * config.page_size + 2 * model.num_layers * model.kv_dim() * 4;
    const int64_t fit = spare > 0 ? int64_t(spare / double(bytes_per_page)) : 0;
    if (fit < pages) {
      pages = std::max<int64_t>(fit, 0);
      p.kv_capped = true;
    }
  }
  p.kv_capacity_tokens = pages * config.page_size;
  p.kv_bytes = KvCache::bytes_for(model, config.page_size, pages);
  return p;
}

Status Engine::create(const model::ModelConfig& model, model::LlamaWeights weights,
                      const EngineConfig& config, std::unique_ptr<Engine>* out) {
  TIDAL_RETURN_IF_ERROR(model.validate());
  TIDAL_RETURN_IF_ERROR(config.validate());
  std::unique_ptr<Engine> e(new Engine());
  e->model_ = model;
  e->config_ = config;
  const size_t available = available_host_memory();
  e->plan_ = plan_memory(model, config, available);
  if (e->plan_.max_context > model.max_position_embeddings) {
    return invalid_argument("max_context " + str(e->plan_.max_context) +
                            " exceeds the model's context of " +
                            str(model.max_position_embeddings) + " tokens");
  }
  const size_t total = e->plan_.weight_bytes + e->plan_.kv_bytes + e->plan_.workspace_bytes;
  if (e->plan_.kv_capacity_tokens < config.page_size || (available > 0 && total > available)) {
    return out_of_memory("weights, KV cache and workspace need " + gib(total) + " GiB (KV " +
                         str(e->plan_.kv_capacity_tokens) + " tokens); " + gib(available) +
                         " GiB of host memory is available");
  }
  e->weights_ = std::move(weights);
  KvCacheConfig kv;
  kv.page_size = config.page_size;
  kv.num_pages = e->plan_.kv_capacity_tokens / config.page_size;
  TIDAL_RETURN_IF_ERROR(KvCache::create(model, kv, &e->kv_));
  TIDAL_RETURN_IF_ERROR(
      model::LlamaWorkspace::create(model, workspace_shape(model, config), &e->ws_));
  e->max_pages_ = (e->plan_.max_context + config.page_size - 1) / config.page_size;
  e->row_used_.assign(size_t(config.max_batch), false);
  e->block_tables_.assign(size_t(config.max_batch * e->max_pages_), 0);
  *out = std::move(e);
  return ok_status();
}

Status Engine::load(const std::string& dir, const EngineConfig& config,
                    std::unique_ptr<Engine>* out) {
  model::ModelConfig model;
  TIDAL_RETURN_IF_ERROR(model::load_model_config(dir, &model));
  std::unique_ptr<model::SafetensorsCheckpoint> ckpt;
  TIDAL_RETURN_IF_ERROR(model::SafetensorsCheckpoint::open(dir, &ckpt));
  model::LlamaWeights weights;
  TIDAL_RETURN_IF_ERROR(model::load_llama_weights(model, *ckpt, &weights).with_context(dir));
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

const model::AttentionStats& Engine::stats(SeqId id) const {
  const Sequence* s = find(id);
  TIDAL_CHECK(s != nullptr, "Engine::stats: unknown sequence");
  return s->stats;
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
  if (layer < 0 || layer >= model_.num_layers || position < 0 || position >= s->cached) {
    return out_of_range("no cached K/V at layer " + str(layer) + ", position " + str(position));
  }
  const model::KvLayer& kv = kv_.layers()[size_t(layer)];
  const int64_t page = s->block_table[size_t(position / kv_.page_size())];
  const TensorView k = kv.k.select(page).select(position % kv_.page_size());
  const TensorView v = kv.v.select(page).select(position % kv_.page_size());
  key->assign(k.data_as<float>(), k.data_as<float>() + model_.kv_dim());
  value->assign(v.data_as<float>(), v.data_as<float>() + model_.kv_dim());
  return ok_status();
}

int64_t Engine::length(SeqId id) const {
  auto it = seqs_.find(id);
  return it == seqs_.end() ? 0 : it->second.cached;
}

int64_t Engine::kv_tokens_in_use() const {
  return (kv_.num_pages() - kv_.free_pages()) * kv_.page_size();
}

Status Engine::add_sequence(const std::vector<int32_t>& prompt, SeqId* id) {
  return add_sequence(prompt, model::AttentionPolicy(), id);
}

Status Engine::add_sequence(const std::vector<int32_t>& prompt,
                            const model::AttentionPolicy& policy, SeqId* id) {
  TIDAL_RETURN_IF_ERROR(policy.validate(model_, config_.page_size));
  const int64_t budget = policy.kind == model::AttentionKind::kTidal   ? policy.tidal.budget
                         : policy.kind == model::AttentionKind::kQuest ? policy.quest.budget
                                                                       : 0;
  if (budget > ws_.shape.max_budget) {
    return invalid_argument("budget " + str(budget) + " exceeds the engine's max_budget " +
                            str(ws_.shape.max_budget));
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
  auto free_row = std::find(row_used_.begin(), row_used_.end(), false);
  if (free_row == row_used_.end()) {
    return unavailable("all " + str(config_.max_batch) + " sequence slots are in use");
  }
  Sequence seq;
  seq.tokens = prompt;
  seq.row = free_row - row_used_.begin();
  seq.policy = policy;
  seq.reselect = model::reselect_layers(policy, model_);
  TIDAL_RETURN_IF_ERROR(kv_.reserve(&seq.block_table, n));
  *free_row = true;
  *id = next_id_++;
  seqs_.emplace(*id, std::move(seq));
  return ok_status();
}

void Engine::release(SeqId id) {
  Sequence* s = find(id);
  if (s == nullptr) return;
  kv_.release(&s->block_table);
  row_used_[size_t(s->row)] = false;
  seqs_.erase(id);
}

void Engine::run_step(const std::vector<Sequence*>& seqs, const std::vector<int64_t>& seq_of_tok,
                      const std::vector<int64_t>& pos_of_tok,
                      const std::vector<int32_t>& logit_rows, bool decode, TensorView logits) {
  const size_t n = seq_of_tok.size();
  std::vector<int32_t> tokens(n), positions(n), rows(n);
  std::vector<uint8_t> decode_flags(n, decode ? 1 : 0);
  for (size_t t = 0; t < n; ++t) {
    const Sequence* s = seqs[size_t(seq_of_tok[t])];
    tokens[t] = s->tokens[size_t(pos_of_tok[t])];
    positions[t] = int32_t(pos_of_tok[t]);
    rows[t] = int32_t(s->row);
  }
  std::vector<model::SequenceAttention> attention(size_t(config_.max_batch));
  for (Sequence* s : seqs) {
    int32_t* row = block_tables_.data() + s->row * max_pages_;
    std::copy(s->block_table.begin(), s->block_table.end(), row);
    model::SequenceAttention& a = attention[size_t(s->row)];
    a.policy = &s->policy;
    a.reselect = s->reselect;
    a.stats = &s->stats;
    a.trace = s->trace;
  }
  std::vector<int32_t> wanted = logit_rows;
  model::ForwardBatch batch;
  batch.tokens = make_view(tokens.data(), DType::kI32, {int64_t(n)});
  batch.positions = make_view(positions.data(), DType::kI32, {int64_t(n)});
  batch.seq_ids = make_view(rows.data(), DType::kI32, {int64_t(n)});
  batch.block_tables =
      make_view(block_tables_.data(), DType::kI32, {config_.max_batch, max_pages_});
  batch.logit_rows = make_view(wanted.data(), DType::kI32, {int64_t(wanted.size())});
  batch.decode = make_view(decode_flags.data(), DType::kU8, {int64_t(n)});
  batch.attention = attention.data();
  model::llama_forward(model_, weights_, batch, kv_.layers(), ws_, logits);
}

void Engine::dense_pass(Sequence* s, int64_t begin, int64_t end, TensorView logits) {
  while (begin < end) {
    const int64_t chunk = std::min(config_.prefill_chunk, end - begin);
    std::vector<int64_t> seq_of_tok(static_cast<size_t>(chunk), 0);
    std::vector<int64_t> pos_of_tok(static_cast<size_t>(chunk));
    for (int64_t i = 0; i < chunk; ++i) pos_of_tok[size_t(i)] = begin + i;
    std::vector<int32_t> rows;
    if (begin + chunk == end && logits.data != nullptr) rows.push_back(int32_t(chunk - 1));
    const TensorView out =
        make_view(logits.data, DType::kF32, {int64_t(rows.size()), model_.vocab});
    run_step({s}, seq_of_tok, pos_of_tok, rows, /*decode=*/false, out);
    begin += chunk;
  }
}

Status Engine::prefill(SeqId id, TensorView logits) {
  Sequence* s = find(id);
  if (s == nullptr) return invalid_argument("unknown sequence " + str(id));
  TIDAL_CHECK(logits.rank == 1 && logits.size(0) == model_.vocab,
              "prefill: logits must be [vocab]");
  const int64_t total = int64_t(s->tokens.size());
  if (s->cached >= total) return invalid_argument("sequence " + str(id) + " is already prefilled");
  dense_pass(s, s->cached, total, logits);
  s->cached = total;
  return ok_status();
}

Status Engine::correct(SeqId id, int64_t num_tokens) {
  Sequence* s = find(id);
  if (s == nullptr) return invalid_argument("unknown sequence " + str(id));
  if (num_tokens < 1) return invalid_argument("a correction needs at least one token");
  const int64_t n = std::min(num_tokens, s->cached);
  // Recomputing positions [cached - n, cached) writes their K/V again, now from dense attention
  // in every layer (each attends to the full cache before it, itself corrected first).
  dense_pass(s, s->cached - n, s->cached, TensorView());
  s->stats.correction_passes += 1;
  s->stats.correction_tokens += n;
  return ok_status();
}

Status Engine::decode(const std::vector<SeqId>& ids, const std::vector<int32_t>& tokens,
                      TensorView logits) {
  if (ids.empty() || ids.size() != tokens.size()) {
    return invalid_argument("decode needs one token per sequence");
  }
  TIDAL_CHECK(
      logits.rank == 2 && logits.size(0) == int64_t(ids.size()) && logits.size(1) == model_.vocab,
      "decode: logits must be [num_seqs, vocab]");
  std::vector<Sequence*> seqs;
  for (size_t i = 0; i < ids.size(); ++i) {
    Sequence* s = find(ids[i]);
    if (s == nullptr) return invalid_argument("unknown sequence " + str(ids[i]));
    if (std::find(seqs.begin(), seqs.end(), s) != seqs.end()) {
      return invalid_argument("sequence " + str(ids[i]) + " appears twice in one decode step");
    }
    if (s->cached != int64_t(s->tokens.size())) {
      return invalid_argument("sequence " + str(ids[i]) + " must be prefilled before decoding");
    }
    if (tokens[i] < 0 || tokens[i] >= model_.vocab) {
      return invalid_argument("token id " + str(tokens[i]) + " is outside the vocabulary");
    }
    if (s->cached + 1 > plan_.max_context) {
      return out_of_range("sequence " + str(ids[i]) + " reached the context of " +
                          str(plan_.max_context) + " tokens");
    }
    seqs.push_back(s);
  }
  // Reserve every page first so a full cache changes nothing.
  std::vector<size_t> before;
  for (Sequence* s : seqs) before.push_back(s->block_table.size());
  for (size_t i = 0; i < seqs.size(); ++i) {
    const Status st = kv_.reserve(&seqs[i]->block_table, seqs[i]->cached + 1);
    if (!st.ok()) {
      for (size_t j = 0; j <= i; ++j) {
        std::vector<int32_t> extra(seqs[j]->block_table.begin() + long(before[j]),
                                   seqs[j]->block_table.end());
        seqs[j]->block_table.resize(before[j]);
        kv_.release(&extra);
      }
      return st;
    }
  }
  std::vector<Sequence*> step;
  std::vector<int64_t> seq_of_tok, pos_of_tok;
  std::vector<int32_t> rows;
  for (size_t i = 0; i < seqs.size(); ++i) {
    seqs[i]->tokens.push_back(tokens[i]);
    step.push_back(seqs[i]);
    seq_of_tok.push_back(int64_t(i));
    pos_of_tok.push_back(seqs[i]->cached);
    rows.push_back(int32_t(i));
  }
  run_step(step, seq_of_tok, pos_of_tok, rows, /*decode=*/true, logits);
  for (Sequence* s : seqs) {
    s->cached += 1;
    s->stats.decode_steps += 1;
  }
  return ok_status();
}

}  // namespace tidal::engine
