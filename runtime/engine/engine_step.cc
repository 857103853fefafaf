// SPDX-License-Identifier: Apache-2.0
// Engine::step: one mixed step of continuous batching (DESIGN.md §3): the next decode token of
// every running sequence, then prefill chunks of sequences being admitted and correction chunks
// of running ones, in one forward. The plan is built exactly as decode() and dense_pass() build
// theirs (StepPlan::add_decode, then add_prefill by sequence), in buffers sized at create, so a
// step allocates nothing; a decode-only step is padded to its bucket and replays a CUDA graph.
#include <algorithm>

#include "kernels/sample_tokens.h"
#include "runtime/engine/engine.h"

namespace tidal::engine {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

static_assert(kNonFiniteToken == kernels::kNonFiniteLogits,
              "Engine::step reports non-finite rows with the sampler's marker");

}  // namespace

Status Engine::step(const std::vector<SeqId>& ids, const std::vector<int32_t>& tokens,
                    const std::vector<StepChunk>& chunks, TensorView logits,
                    std::vector<int32_t>* sampled) {
  if (ids.size() != tokens.size()) return invalid_argument("step needs one token per sequence");
  if (ids.empty() && chunks.empty()) return invalid_argument("step has nothing to run");
  // The step's sequences live in buffers sized at create: a step allocates nothing.
  std::vector<Sequence*>& seqs = step_seqs_;
  std::vector<Sequence*>& chunk_seqs = chunk_seqs_;
  seqs.clear();
  chunk_seqs.clear();
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
  int64_t chunk_tokens = 0, logit_rows = int64_t(ids.size());
  for (const StepChunk& c : chunks) {
    Sequence* s = find(c.id);
    if (s == nullptr) return invalid_argument("unknown sequence " + str(c.id));
    if (std::find(chunk_seqs.begin(), chunk_seqs.end(), s) != chunk_seqs.end()) {
      return invalid_argument("sequence " + str(c.id) + " has two chunks in one step");
    }
    const bool prefill = c.begin == s->cached && s->cached < int64_t(s->tokens.size());
    const int64_t limit = prefill ? int64_t(s->tokens.size()) : s->cached;
    // The count is compared with the positions left, not begin + count with the limit: a huge
    // count would wrap that sum (and then the step's token total) past every check.
    if (c.count < 1 || c.begin < 0 || c.count > limit - c.begin) {
      return invalid_argument("chunk of " + str(c.count) + " tokens at " + str(c.begin) +
                              " of sequence " + str(c.id) +
                              " is neither its next prompt tokens nor cached");
    }
    const int64_t end = c.begin + c.count;
    if (prefill && std::find(seqs.begin(), seqs.end(), s) != seqs.end()) {
      return invalid_argument("sequence " + str(c.id) + " decodes beside its own prefill");
    }
    if (c.sample && !(prefill && end == int64_t(s->tokens.size()))) {
      return invalid_argument("a chunk samples only at the end of its sequence's prompt");
    }
    chunk_tokens += c.count;
    logit_rows += c.sample ? 1 : 0;
    chunk_seqs.push_back(s);
  }
  const StepCapacity& cap = step_->capacity();
  if (int64_t(ids.size()) > cap.max_decode || int64_t(chunks.size()) > cap.max_prefill_seqs ||
      int64_t(ids.size()) + chunk_tokens > cap.max_tokens) {
    return invalid_argument("step of " + str(int64_t(ids.size())) + " decode tokens and " +
                            str(chunk_tokens) + " chunk tokens exceeds the step capacity (" +
                            str(cap.max_decode) + " decode, " + str(cap.max_tokens) + " in all)");
  }
  TIDAL_CHECK(logits.data == nullptr || (logits.rank == 2 && logits.size(0) <= logit_rows &&
                                         logits.size(1) == model_.vocab &&
                                         logits.dtype == DType::kF32 && logits.on_cpu()),
              "step: logits must be host f32 [rows, vocab], rows <= the sampled rows");
  // Reserve every decode page first so a full cache changes nothing.
  std::vector<size_t>& before = pages_before_;
  before.clear();
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
      seqs.clear();
      chunk_seqs.clear();
      return st;
    }
  }

  step_->clear();
  bool traced = rank_trace_ != nullptr;
  for (size_t i = 0; i < seqs.size(); ++i) {
    seqs[i]->tokens.push_back(tokens[i]);
    add_decode_token(seqs[i], tokens[i]);
    traced = traced || seqs[i]->trace != nullptr;
  }
  // A decode-only step on a GPU with graphs is padded to its bucket: padding tokens attend to
  // the padding page. A step with chunks runs eagerly, and so does one that pipeline stages take
  // in micro-batches (micro_batches), which is not padded.
  const bool micro_batched =
      micro_batches(int64_t(seqs.size()), chunks.empty(), logits.data != nullptr, traced) > 1;
  const bool graphs = chunks.empty() && config_.device.kind == DeviceKind::kCuda &&
                      config_.cuda_graphs && !traced && !attention_marker_ && !micro_batched;
  int64_t padded = int64_t(seqs.size());
  if (graphs) padded = *std::lower_bound(buckets_.begin(), buckets_.end(), padded);
  for (int64_t i = int64_t(seqs.size()); i < padded; ++i) {
    DecodeToken pad;
    pad.seq_row = int32_t(config_.max_batch);
    pad.padding = true;
    step_->add_decode(pad);
  }
  for (int64_t i = 0; i < padded; ++i) {
    add_sample_row(int32_t(i), i < int64_t(seqs.size()) ? seqs[size_t(i)] : nullptr);
  }
  int64_t row = padded;  // the next chunk's first token row
  for (size_t i = 0; i < chunks.size(); ++i) {
    const StepChunk& c = chunks[i];
    Sequence* s = chunk_seqs[i];
    const bool prefill = c.begin == s->cached;
    if (prefill && c.begin == 0 && progress_) progress_(0, int64_t(s->tokens.size()));
    upload_pages(s, c.begin + c.count);
    step_->add_prefill(int32_t(s->row), int32_t(c.begin), s->tokens.data() + c.begin, c.count);
    row += c.count;
    if (c.sample) add_sample_row(int32_t(row - 1), s);
  }
  run_step(logits);

  // The step's effects on the host side: decode tokens cached, prefill progress, statistics.
  // A row whose logits were not finite drew nothing: its sampling counter stays.
  int64_t logit = 0;
  for (Sequence* s : seqs) {
    count_decode_stats(s);
    s->cached += 1;
    if (sampled != nullptr && sampled_host_[logit] != kNonFiniteToken) s->samples_drawn += 1;
    ++logit;
  }
  logit = padded;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const StepChunk& c = chunks[i];
    Sequence* s = chunk_seqs[i];
    if (c.begin == s->cached) {  // prefill
      s->cached = c.begin + c.count;
      if (progress_) progress_(s->cached, int64_t(s->tokens.size()));
      if (c.sample && sampled != nullptr && sampled_host_[logit] != kNonFiniteToken) {
        s->samples_drawn += 1;
      }
    } else {
      s->stats.correction_tokens += c.count;
      if (c.ends_pass) s->stats.correction_passes += 1;
    }
    if (c.sample) ++logit;
  }
  if (sampled != nullptr) {
    sampled->clear();
    sampled->insert(sampled->end(), sampled_host_, sampled_host_ + seqs.size());
    sampled->insert(sampled->end(), sampled_host_ + padded, sampled_host_ + logit);
  }
  seqs.clear();
  chunk_seqs.clear();
  return ok_status();
}

}  // namespace tidal::engine
