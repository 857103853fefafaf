// SPDX-License-Identifier: Apache-2.0
#include "model/parallel_forward.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "kernels/embedding_lookup.h"
#include "kernels/list_agreement.h"
#include "kernels/sample_tokens.h"
#include "kernels/topk_per_row.h"
#include "kernels/vocab_shard.h"

namespace tidal::model {
namespace {

namespace k = kernels;

bool f32_partials(const ParallelShape& s) {
  return s.tp_size > 1 && s.dtype != DType::kF32 && s.max_tokens > 0 && s.hidden > 0;
}

// with_partial: carve `partial` from the arena too (no registered memory holds it).
void carve(const ParallelShape& s, BumpAllocator& a, ParallelBuffers* b, bool with_partial) {
  const int64_t d = std::max<int64_t>(1, s.max_decode), kb = std::max<int64_t>(1, s.max_budget);
  b->candidates = a.allocate(DType::kI32, {d, kb});
  b->gathered = a.allocate(DType::kI32, {s.tp_size, d, kb});
  b->totals = a.allocate(DType::kF32, {s.tp_size, d, kb});
  b->merged_roles = a.allocate(DType::kU8, {d});
  b->pairs = a.allocate(DType::kI32, {s.max_logits, 2});
  b->all_pairs = a.allocate(DType::kI32, {s.tp_size, s.max_logits, 2});
  b->shard_logits = a.allocate(DType::kF32, {s.tp_size, s.max_logits, s.vocab_shard});
  b->logits = a.allocate(DType::kF32, {s.max_logits, s.vocab});
  b->sampled = a.allocate(DType::kI32, {s.max_logits});
  k::SampleParams sp;
  sp.logits = make_view(nullptr, DType::kF32, {s.max_logits, s.vocab}, s.device);
  b->scratch =
      a.allocate(DType::kU8, {std::max<int64_t>(1, int64_t(k::sample_tokens_workspace_size(sp)))});
  if (with_partial) b->partial = a.allocate(DType::kF32, {s.max_tokens, s.hidden});
}

// The host copy's role of decode token t in `layer`.
k::TokenRole host_role(const ForwardBatch& host, int64_t layer, int64_t t) {
  return k::TokenRole(host.roles.data_as<uint8_t>()[layer * host.roles.stride[0] + t]);
}

const ForwardBatch& host_of(const ForwardBatch& b) {
  TIDAL_CHECK(b.host != nullptr,
              "parallel forward: the batch needs its host copy (ForwardBatch::host)");
  return *b.host;
}

// The communicator agreeing tokens of `code` use; null when none is needed (a group of one).
parallel::Communicator* group_for(const ForwardParallel& par, ListAgreement code) {
  parallel::Communicator* c =
      code == ListAgreement::kApproxTp || code == ListAgreement::kExactTp ? par.tp : par.kv_group;
  return c != nullptr && c->size() > 1 ? c : nullptr;
}

// Decode tokens that select in `layer` and agree by `code`.
std::vector<int64_t> agreeing(const ForwardBatch& host, int64_t layer, ListAgreement code) {
  std::vector<int64_t> tokens;
  for (int64_t t = 0; t < host.num_decode; ++t) {
    if (k::is_selecting(host_role(host, layer, t)) &&
        host.agreement.data_as<uint8_t>()[t] == uint8_t(code)) {
      tokens.push_back(t);
    }
  }
  return tokens;
}

// Calls par.marker (when set) around its scope, from open() (or construction) to its end.
class MarkedSpan {
 public:
  MarkedSpan(const ForwardParallel& par, CommSpan span, bool open_now = true)
      : par_(par), span_(span) {
    if (open_now) open();
  }
  void open() {
    if (open_ || !par_.marker) return;
    par_.marker(span_, false);
    open_ = true;
  }
  ~MarkedSpan() {
    if (open_) par_.marker(span_, true);
  }
  MarkedSpan(const MarkedSpan&) = delete;
  MarkedSpan& operator=(const MarkedSpan&) = delete;

 private:
  const ForwardParallel& par_;
  CommSpan span_;
  bool open_ = false;
};

}  // namespace

size_t ParallelBuffers::bytes_for(const ParallelShape& shape) {
  BumpAllocator plan = BumpAllocator::planner(shape.device);
  ParallelBuffers b;
  carve(shape, plan, &b, f32_partials(shape));
  return plan.used();
}

Status ParallelBuffers::create(const ParallelShape& shape, parallel::Communicator* tp,
                               ParallelBuffers* out) {
  // The partial sums in memory the TP group registered, when it can (every rank the same size,
  // every all-reduce from offset 0: what NCCL's symmetric windows ask).
  const bool partial = f32_partials(shape);
  std::shared_ptr<void> registered;
  if (partial && tp != nullptr && tp->size() > 1 && shape.device.kind == DeviceKind::kCuda) {
    registered = tp->alloc_registered(size_t(shape.max_tokens * shape.hidden) * 4);
  }
  const bool own_partial = partial && registered == nullptr;  // carved from the arena
  BumpAllocator plan = BumpAllocator::planner(shape.device);
  carve(shape, plan, out, own_partial);
  Arena arena;
  TIDAL_RETURN_IF_ERROR(Arena::create(plan.used(), "parallel buffers", shape.device, &arena));
  BumpAllocator alloc = arena.allocator();
  carve(shape, alloc, out, own_partial);
  if (registered != nullptr) {
    out->partial =
        make_view(registered.get(), DType::kF32, {shape.max_tokens, shape.hidden}, shape.device);
  }
  out->registered = std::move(registered);
  out->arena = std::move(arena);
  return ok_status();
}

ForwardBatch decode_slice(const ForwardBatch& b, int64_t begin, int64_t end) {
  TIDAL_CHECK(b.tokens.size(0) == b.num_decode && begin >= 0 && begin < end && end <= b.num_decode,
              "decode_slice: a range of a decode-only batch");
  ForwardBatch s = b;
  for (TensorView* v : {&s.tokens, &s.positions, &s.seq_ids, &s.lengths, &s.prior_lens,
                        &s.num_lists, &s.budgets, &s.page_lengths, &s.page_budgets, &s.agreement}) {
    *v = v->slice(begin, end);
  }
  s.num_decode = end - begin;
  // roles: [num_layers, num_decode] with a row stride of its own; the columns of the range.
  s.roles.data = static_cast<uint8_t*>(b.roles.data) + begin;
  s.roles.shape[1] = end - begin;
  s.logit_rows = b.logit_rows.slice(0, end - begin);
  s.host = nullptr;
  return s;
}

void tp_all_reduce(ForwardParallel& par, TensorView buf, Stream stream) {
  if (par.tp == nullptr || par.tp->size() == 1) return;
  MarkedSpan span(par, CommSpan::kAllReduce);
  par.tp->all_reduce(buf, stream);
}

bool lists_live_at(const ForwardBatch& host, int64_t boundary) {
  const int64_t layers = host.roles.size(0);
  for (int64_t t = 0; t < host.num_decode; ++t) {
    bool selected = false, used = false;
    for (int64_t l = 0; l < layers; ++l) {
      const k::TokenRole r = host_role(host, l, t);
      if (l < boundary) selected = selected || k::is_selecting(r);
      if (l >= boundary) used = used || r == k::TokenRole::kSparse || r == k::TokenRole::kReselect;
    }
    if (selected && used) return true;
  }
  return false;
}

bool launch_signature(const ForwardParallel& par, const ForwardBatch& host,
                      std::vector<int64_t>* sig) {
  const ModelShard& s = par.shard;
  const bool decode = host.num_decode > 0;
  sig->push_back(decode && !s.first_stage() && lists_live_at(host, s.layer_begin));
  sig->push_back(decode && !s.last_stage() && lists_live_at(host, s.layer_end));
  for (int64_t l = s.layer_begin; l < s.layer_end && decode; ++l) {
    for (ListAgreement code : {ListAgreement::kExactTp, ListAgreement::kExactKvGroup}) {
      if (group_for(par, code) != nullptr && !agreeing(host, l, code).empty()) return false;
    }
    for (ListAgreement code : {ListAgreement::kApproxTp, ListAgreement::kApproxKvGroup}) {
      if (group_for(par, code) == nullptr) continue;
      int64_t kb = 0;  // as agree_approx sizes the candidates
      for (int64_t t : agreeing(host, l, code)) {
        kb = std::max<int64_t>({kb, 1, host.budgets.data_as<int32_t>()[t]});
      }
      sig->push_back(kb);
    }
  }
  return true;
}

void stage_input(ForwardParallel& par, const ModelConfig& /*local*/, const LlamaWeights& w,
                 const ForwardBatch& b, LlamaWorkspace& ws, TensorView x, Stream stream) {
  const ModelShard& s = par.shard;
  if (s.first_stage()) {
    if (!s.vocab_split) {
      k::embedding_lookup(x, w.embed, b.tokens, stream);
      return;
    }
    k::embedding_lookup_shard(x, w.embed, b.tokens, s.vocab.begin, stream);
    tp_all_reduce(par, x, stream);
    return;
  }
  const int prev = s.coords.pp_rank - 1;
  par.pp->recv(x, prev, stream);
  if (b.num_decode > 0 && lists_live_at(host_of(b), s.layer_begin)) {
    par.pp->recv(ws.lists.slice(0, b.num_decode), prev, stream);
    par.pp->recv(ws.counts.slice(0, b.num_decode), prev, stream);
  }
}

void stage_output(ForwardParallel& par, const ForwardBatch& b, LlamaWorkspace& ws, TensorView x,
                  Stream stream) {
  const ModelShard& s = par.shard;
  TIDAL_CHECK(!s.last_stage(), "stage_output: the last stage has no next stage");
  const int next = s.coords.pp_rank + 1;
  par.pp->send(x, next, stream);
  if (b.num_decode > 0 && lists_live_at(host_of(b), s.layer_end)) {
    par.pp->send(ws.lists.slice(0, b.num_decode), next, stream);
    par.pp->send(ws.counts.slice(0, b.num_decode), next, stream);
  }
}

void agree_exact(ForwardParallel& par, const ForwardBatch& b, int64_t layer, LlamaWorkspace& ws,
                 Stream stream) {
  const ForwardBatch& host = host_of(b);
  MarkedSpan span(par, CommSpan::kAgreement, /*open_now=*/false);  // at the first agreeing token
  const int64_t heads = ws.scores.size(1), max_len = ws.scores.size(2);
  bool any = false;
  for (ListAgreement code : {ListAgreement::kExactTp, ListAgreement::kExactKvGroup}) {
    parallel::Communicator* comm = group_for(par, code);
    if (comm == nullptr) continue;
    for (int64_t t : agreeing(host, layer, code)) {
      // Row 0 of the token's scores: the summed probabilities of this rank's heads.
      const int64_t n = host.lengths.data_as<int32_t>()[t];
      float* row = ws.scores.data_as<float>() + t * heads * max_len;
      span.open();
      comm->all_reduce(make_view(row, DType::kF32, {n}, ws.scores.device), stream);
      par.counters.exact_bytes += n * 4;
      any = true;
    }
  }
  par.counters.exact_layers += any;
}

void agree_approx(ForwardParallel& par, const ForwardBatch& b, int64_t layer, LlamaWorkspace& ws,
                  Stream stream) {
  const ForwardBatch& host = host_of(b);
  MarkedSpan span(par, CommSpan::kAgreement, /*open_now=*/false);  // at the first agreeing group
  const int64_t d = b.num_decode;
  const TensorView roles = b.roles.select(layer);
  ParallelBuffers& buf = *par.buffers;
  bool any = false;
  for (ListAgreement code : {ListAgreement::kApproxTp, ListAgreement::kApproxKvGroup}) {
    parallel::Communicator* comm = group_for(par, code);
    if (comm == nullptr) continue;
    const std::vector<int64_t> tokens = agreeing(host, layer, code);
    if (tokens.empty()) continue;
    span.open();
    // Candidates as long as the longest agreeing list, not the engine's largest budget.
    int64_t kb = 1;
    for (int64_t t : tokens) kb = std::max<int64_t>(kb, host.budgets.data_as<int32_t>()[t]);
    const int64_t ranks = comm->size();
    const Device dev = ws.scores.device;
    const TensorView cand = make_view(buf.candidates.data, DType::kI32, {d, kb}, dev);
    // Gathered as [ranks * d, kb] (rank r's candidates in rows r * d ...), used as [ranks, d, kb].
    const TensorView gathered_rows =
        make_view(buf.gathered.data, DType::kI32, {ranks * d, kb}, dev);
    const TensorView gathered = make_view(buf.gathered.data, DType::kI32, {ranks, d, kb}, dev);
    const TensorView totals = make_view(buf.totals.data, DType::kF32, {ranks, d, kb}, dev);
    const TensorView merged_roles = buf.merged_roles.slice(0, d);
    k::ListCandidatesParams c;
    c.candidates = cand;
    c.lists = ws.new_lists.slice(0, d);
    c.counts = ws.new_counts.slice(0, d);
    c.roles = roles;
    c.agreement = b.agreement;
    c.match = uint8_t(code);
    k::list_candidates(c, stream);
    comm->all_gather(gathered_rows, cand, stream);
    // Every rank scores every candidate with its heads; the sum is each candidate's whole score.
    k::candidate_scores({totals, gathered, ws.scores.slice(0, d)}, stream);
    comm->all_reduce(totals, stream);
    k::MergeCandidatesParams m;
    m.scores = ws.scores.slice(0, d);
    m.candidates = gathered;
    m.totals = totals;
    m.lengths = b.lengths;
    m.roles = roles;
    m.agreement = b.agreement;
    m.match = uint8_t(code);
    m.merged_roles = merged_roles;
    k::merge_candidates(m, stream);
    // Re-select the merged tokens only: the same rule as one rank's selection.
    k::TopkPerRowParams t;
    t.indices = ws.new_lists.slice(0, d);
    t.counts = ws.new_counts.slice(0, d);
    t.scores = ws.scores.slice(0, d);
    t.lengths = b.lengths;
    t.budgets = b.budgets;
    t.num_lists = b.num_lists;
    t.roles = merged_roles;
    t.active_roles = k::kSelectingRoles;
    k::topk_per_row(t, ws.scratch, stream);
    par.counters.approx_bytes += d * kb * 4 + ranks * d * kb * 4;
    any = true;
  }
  par.counters.approx_layers += any;
}

}  // namespace tidal::model
