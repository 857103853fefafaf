// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/step_plan.h"

#include <algorithm>
#include <cstring>

namespace tidal::engine {
namespace {

// Bump layout: every array 16-byte aligned (8-byte elements and vector loads).
size_t take(size_t* cursor, size_t bytes) {
  const size_t at = (*cursor + 15) / 16 * 16;
  *cursor = at + bytes;
  return at;
}

TensorView view(void* base, size_t offset, DType dtype, std::initializer_list<int64_t> shape,
                Device device) {
  return make_view(static_cast<uint8_t*>(base) + offset, dtype, shape, device);
}

}  // namespace

StepPlan::StepPlan(const StepCapacity& c)
    : capacity_(c),
      range_tokens_(size_t(std::max<int64_t>(c.num_layers, 0)), 0),
      head_lists_(size_t(std::max<int64_t>(c.max_decode, 0)), 0),
      padding_(size_t(std::max<int64_t>(c.max_decode, 0)), 0) {
  TIDAL_CHECK(c.max_tokens >= 1 && c.max_decode >= 0 && c.max_decode <= c.max_tokens &&
                  c.max_prefill_seqs >= 1 && c.max_logits >= 1 && c.num_layers >= 1 &&
                  c.max_updates >= 1,
              "StepPlan: bad capacity");
  size_t at = sizeof(StepHeader);
  const size_t t = size_t(c.max_tokens) * 4, d = size_t(c.max_decode) * 4;
  const size_t p = size_t(c.max_prefill_seqs) * 4, lg = size_t(c.max_logits);
  off_.tokens = take(&at, t);
  off_.positions = take(&at, t);
  off_.seq_ids = take(&at, t);
  off_.lengths = take(&at, d);
  off_.prior_lens = take(&at, d);
  off_.num_lists = take(&at, d);
  off_.budgets = take(&at, d);
  off_.page_lengths = take(&at, d);
  off_.page_budgets = take(&at, d);
  off_.agreement = take(&at, size_t(c.max_decode));
  off_.roles = take(&at, size_t(c.num_layers * c.max_decode));
  off_.layer_ops = take(&at, size_t(c.num_layers));
  off_.query_starts = take(&at, p + 4);
  off_.prefill_seq_ids = take(&at, p);
  off_.context_lens = take(&at, p);
  off_.logit_rows = take(&at, lg * 4);
  off_.temperature = take(&at, lg * 4);
  off_.top_k = take(&at, lg * 4);
  off_.top_p = take(&at, lg * 4);
  off_.min_p = take(&at, lg * 4);
  off_.seeds = take(&at, lg * 8);
  off_.counters = take(&at, lg * 8);
  off_.updates = take(&at, size_t(c.max_updates) * 12);
  bytes_ = (at + 15) / 16 * 16;
}

void StepPlan::bind(void* host) {
  base_ = host;
  std::memset(base_, 0, bytes_);
  clear();
}

void StepPlan::clear() {
  TIDAL_CHECK(base_ != nullptr, "StepPlan: not bound to a buffer");
  mutable_header() = StepHeader();
  std::memset(array<uint8_t>(off_.layer_ops), 0, size_t(capacity_.num_layers));
  std::fill(range_tokens_.begin(), range_tokens_.end(), 0);
  array<int32_t>(off_.query_starts)[0] = 0;
  std::fill_n(array<int32_t>(off_.updates), 3 * capacity_.max_updates, -1);
}

int64_t StepPlan::add_decode(const DecodeToken& t) {
  StepHeader& h = mutable_header();
  TIDAL_CHECK(h.num_tokens == h.num_decode, "StepPlan: decode tokens must come before prefill");
  TIDAL_CHECK(h.num_decode < capacity_.max_decode, "StepPlan: too many decode tokens");
  const int64_t i = h.num_decode;
  array<int32_t>(off_.tokens)[i] = t.token;
  array<int32_t>(off_.positions)[i] = t.position;
  array<int32_t>(off_.seq_ids)[i] = t.seq_row;
  array<int32_t>(off_.lengths)[i] = t.position + 1;
  array<int32_t>(off_.prior_lens)[i] = t.position;  // its own row is appended this step
  array<int32_t>(off_.num_lists)[i] = t.num_lists;
  array<int32_t>(off_.budgets)[i] = t.budget;
  array<int32_t>(off_.page_lengths)[i] = t.page_length;
  array<int32_t>(off_.page_budgets)[i] = t.page_budget;
  array<uint8_t>(off_.agreement)[i] = t.agreement;
  head_lists_[size_t(i)] = t.head_lists ? 1 : 0;
  padding_[size_t(i)] = t.padding ? 1 : 0;
  uint8_t* ops = array<uint8_t>(off_.layer_ops);
  for (int64_t l = 0; l < capacity_.num_layers; ++l) {
    array<uint8_t>(off_.roles)[l * capacity_.max_decode + i] = uint8_t(kernels::TokenRole::kDense);
    if (t.padding) continue;  // dense over its one position: the hints hold without it
    range_tokens_[size_t(l)] += 1;
    ops[l] = uint8_t(ops[l] & ~model::kLayerListsOnly);
  }
  h.num_decode += 1;
  h.num_tokens += 1;
  return i;
}

void StepPlan::set_role(int64_t decode_index, int64_t layer, kernels::TokenRole role) {
  TIDAL_CHECK(decode_index >= 0 && decode_index < header().num_decode && layer >= 0 &&
                  layer < capacity_.num_layers,
              "StepPlan::set_role: token or layer out of range");
  uint8_t& slot = array<uint8_t>(off_.roles)[layer * capacity_.max_decode + decode_index];
  int32_t& ranges = range_tokens_[size_t(layer)];
  TIDAL_CHECK(!padding_[size_t(decode_index)], "StepPlan::set_role: a padding token's role");
  ranges += int32_t(kernels::is_dense_range(role)) -
            int32_t(kernels::is_dense_range(kernels::TokenRole(slot)));
  slot = uint8_t(role);
  uint8_t& ops = array<uint8_t>(off_.layer_ops)[layer];
  if (kernels::is_selecting(role)) ops |= model::kLayerSelects;
  if (role == kernels::TokenRole::kQuest) ops |= model::kLayerQuest;
  if (!kernels::is_dense_range(role) && head_lists_[size_t(decode_index)] != 0) {
    ops |= model::kLayerHeadLists;
  }
  ops = uint8_t(ranges == 0 ? ops | model::kLayerListsOnly : ops & ~model::kLayerListsOnly);
}

void StepPlan::add_prefill(int32_t seq_row, int32_t first_position, const int32_t* tokens,
                           int64_t count) {
  StepHeader& h = mutable_header();
  TIDAL_CHECK(count >= 1 && h.num_tokens + count <= capacity_.max_tokens,
              "StepPlan: prefill tokens exceed the step's capacity");
  TIDAL_CHECK(h.num_prefill_seqs < capacity_.max_prefill_seqs,
              "StepPlan: too many prefill sequences");
  for (int64_t i = 0; i < count; ++i) {
    array<int32_t>(off_.tokens)[h.num_tokens + i] = tokens[i];
    array<int32_t>(off_.positions)[h.num_tokens + i] = int32_t(first_position + i);
    array<int32_t>(off_.seq_ids)[h.num_tokens + i] = seq_row;
  }
  // A correction chunk rewrites rows of a sequence that may decode in this step too: that decode
  // token's rows from first_position on are written by this step's launches.
  for (int64_t i = 0; i < h.num_decode; ++i) {
    if (array<int32_t>(off_.seq_ids)[i] != seq_row) continue;
    int32_t& prior = array<int32_t>(off_.prior_lens)[i];
    prior = std::max(0, std::min(prior, first_position));
  }
  int32_t* starts = array<int32_t>(off_.query_starts);
  starts[h.num_prefill_seqs + 1] = starts[h.num_prefill_seqs] + int32_t(count);
  array<int32_t>(off_.prefill_seq_ids)[h.num_prefill_seqs] = seq_row;
  array<int32_t>(off_.context_lens)[h.num_prefill_seqs] = int32_t(first_position + count);
  h.num_prefill_seqs += 1;
  h.num_tokens += int32_t(count);
  h.max_query_len = std::max<int32_t>(h.max_query_len, int32_t(count));
}

void StepPlan::add_logit_row(int32_t row, const SampleRow& s) {
  StepHeader& h = mutable_header();
  TIDAL_CHECK(h.num_logits < capacity_.max_logits, "StepPlan: too many logit rows");
  const int64_t i = h.num_logits;
  array<int32_t>(off_.logit_rows)[i] = row;
  array<float>(off_.temperature)[i] = s.temperature;
  array<int32_t>(off_.top_k)[i] = s.top_k;
  array<float>(off_.top_p)[i] = s.top_p;
  array<float>(off_.min_p)[i] = s.min_p;
  array<uint64_t>(off_.seeds)[i] = s.seed;
  array<uint64_t>(off_.counters)[i] = s.counter;
  h.num_logits += 1;
}

void StepPlan::add_page_update(int32_t row, int32_t index, int32_t page) {
  StepHeader& h = mutable_header();
  TIDAL_CHECK(h.num_updates < capacity_.max_updates, "StepPlan: too many block-table updates");
  int32_t* u = array<int32_t>(off_.updates) + 3 * h.num_updates;
  u[0] = row;
  u[1] = index;
  u[2] = page;
  h.num_updates += 1;
}

const uint8_t* StepPlan::layer_ops() const { return array<uint8_t>(off_.layer_ops); }

model::ForwardBatch StepPlan::batch(void* base, Device device, TensorView block_tables) const {
  const StepHeader& h = header();
  const int64_t t = h.num_tokens, d = h.num_decode, p = h.num_prefill_seqs;
  model::ForwardBatch b;
  b.tokens = view(base, off_.tokens, DType::kI32, {t}, device);
  b.positions = view(base, off_.positions, DType::kI32, {t}, device);
  b.seq_ids = view(base, off_.seq_ids, DType::kI32, {t}, device);
  b.num_decode = d;
  b.lengths = view(base, off_.lengths, DType::kI32, {d}, device);
  b.prior_lens = view(base, off_.prior_lens, DType::kI32, {d}, device);
  b.num_lists = view(base, off_.num_lists, DType::kI32, {d}, device);
  b.budgets = view(base, off_.budgets, DType::kI32, {d}, device);
  b.page_lengths = view(base, off_.page_lengths, DType::kI32, {d}, device);
  b.page_budgets = view(base, off_.page_budgets, DType::kI32, {d}, device);
  b.agreement = view(base, off_.agreement, DType::kU8, {d}, device);
  b.roles = view(base, off_.roles, DType::kU8, {capacity_.num_layers, d}, device);
  b.roles.stride[0] = capacity_.max_decode;  // rows of max_decode: each layer's row is dense
  b.layer_ops = layer_ops();                 // host memory: decides launches
  b.query_starts = view(base, off_.query_starts, DType::kI32, {p + 1}, device);
  b.prefill_seq_ids = view(base, off_.prefill_seq_ids, DType::kI32, {p}, device);
  b.context_lens = view(base, off_.context_lens, DType::kI32, {p}, device);
  b.max_query_len = h.max_query_len;
  b.logit_rows = view(base, off_.logit_rows, DType::kI32, {h.num_logits}, device);
  b.block_tables = block_tables;
  b.page_updates = view(base, off_.updates, DType::kI32, {capacity_.max_updates, 3}, device);
  return b;
}

StepPlan::SampleViews StepPlan::samples(void* base, Device device) const {
  const int64_t n = header().num_logits;
  SampleViews s;
  s.temperature = view(base, off_.temperature, DType::kF32, {n}, device);
  s.top_k = view(base, off_.top_k, DType::kI32, {n}, device);
  s.top_p = view(base, off_.top_p, DType::kF32, {n}, device);
  s.min_p = view(base, off_.min_p, DType::kF32, {n}, device);
  s.seeds = view(base, off_.seeds, DType::kI64, {n}, device);
  s.counters = view(base, off_.counters, DType::kI64, {n}, device);
  return s;
}

}  // namespace tidal::engine
