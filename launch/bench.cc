// SPDX-License-Identifier: Apache-2.0
// `tidal bench`: per-token decode latency of preset models with random weights at long context,
// for full attention, Quest and TidalDecode, against the hardware's floor (DESIGN.md §7): the
// bytes a step must move (every weight once, plus the KV rows its attention reads) over the
// device-to-device copy bandwidth measured in the same run. The KV cache is filled with random
// values (no prefill) unless --prefill asks for a real one, which is then timed too.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "benchmarks/common/stats.h"
#include "benchmarks/common/table.h"
#include "kernels/counter_rng.h"
#include "launch/cli.h"
#include "launch/flag_names.h"
#include "launch/kernel_trace.h"
#include "launch/policy_file.h"
#include "launch/presets.h"
#include "launch/progress.h"
#include "model/config.h"
#include "model/weights.h"
#include "runtime/device.h"

namespace tidal::launch {
namespace {

using bench::Cell;
using bench::Column;

// A point in time on the step's stream: a CUDA event on a GPU, the host clock on the CPU (whose
// ops run synchronously on the calling thread).
class Mark {
 public:
  explicit Mark(bool gpu) {
    if (gpu) event_ = std::make_unique<Event>();
  }
  void record(Stream s) {
    if (event_) {
      event_->record(s);
    } else {
      host_ = std::chrono::steady_clock::now();
    }
  }
  void wait() {
    if (event_) event_->synchronize();
  }
  // Milliseconds from `start` to this mark (both recorded, this one complete).
  double ms_since(const Mark& start) const {
    if (event_) return double(event_->elapsed_ms_since(*start.event_));
    return std::chrono::duration<double, std::milli>(host_ - start.host_).count();
  }

 private:
  std::unique_ptr<Event> event_;
  std::chrono::steady_clock::time_point host_;
};

// Rank 0's communication in one step (Engine::set_comm_marker), by kind; NaN: not measured.
struct CommTimes {
  double all_reduce_ms = NAN;    // the activation all-reduces
  double agreement_ms = NAN;     // list agreement (collectives and the kernels between them)
  double step_ms = NAN;          // the whole step they were part of
  int64_t rank0_layers = 0;      // layers of rank 0's stage
  int64_t selection_layers = 0;  // of them, the selection layers of the row's policy
};

// Marks around the spans of one step, on a pool made before it (no event is created mid-step).
class CommMarks {
 public:
  CommMarks(bool gpu, int64_t layers) {
    // At most two all-reduces a layer and the embedding's, and two agreement spans a layer.
    for (int64_t i = 0; i < 2 * (4 * layers + 1); ++i) {
      marks_.push_back(std::make_unique<Mark>(gpu));
    }
  }
  void record(model::CommSpan span, bool after, Stream stream) {
    if (used_ == marks_.size()) {
      overflow_ = true;
      return;
    }
    if (!after) spans_.push_back(span);
    marks_[used_++]->record(stream);
  }
  void wait() {
    if (used_ > 0) marks_[used_ - 1]->wait();
  }
  // Sums of the recorded spans by kind; NaN for a kind with none (or when the pool overflowed).
  CommTimes times() const {
    CommTimes t;
    if (overflow_) return t;
    for (size_t i = 0; i < spans_.size(); ++i) {
      double& sum = spans_[i] == model::CommSpan::kAllReduce ? t.all_reduce_ms : t.agreement_ms;
      if (std::isnan(sum)) sum = 0;
      sum += marks_[2 * i + 1]->ms_since(*marks_[2 * i]);
    }
    return t;
  }

 private:
  std::vector<std::unique_ptr<Mark>> marks_;
  std::vector<model::CommSpan> spans_;
  size_t used_ = 0;
  bool overflow_ = false;
};

struct Variant {
  std::string policy, granularity;
  int64_t budget = 0;  // 0: not applicable (full)
  model::AttentionPolicy attention;
  std::string agreement = "-";  // tidal lists that may span ranks: approx or exact
};

Status build_variants(const BenchOptions& o, const std::vector<int64_t>& budgets,
                      std::vector<Variant>* out) {
  // Every agreement named is checked, and each taken once, in the order given.
  std::vector<std::string> agreements;
  for (const std::string& a : o.agreements) {
    model::Agreement parsed;
    TIDAL_RETURN_IF_ERROR(model::parse_agreement(a, &parsed).with_context("--agreement"));
    if (std::find(agreements.begin(), agreements.end(), a) == agreements.end()) {
      agreements.push_back(a);
    }
  }
  if (agreements.empty()) return invalid_argument("--agreement: name approx, exact or both");
  // Every granularity named is checked too, and a policy or granularity named twice (its rows
  // would run twice) is refused, by its canonical name.
  std::vector<std::pair<std::string, model::Granularity>> granularities;
  std::map<std::string, std::string> granularities_seen, policies_seen;
  for (const std::string& g : o.granularities) {
    model::Granularity parsed;
    TIDAL_RETURN_IF_ERROR(model::parse_granularity(g, &parsed).with_context("--granularity"));
    TIDAL_RETURN_IF_ERROR(
        note_once(model::granularity_name(parsed), g, "--granularity", &granularities_seen));
    granularities.push_back({g, parsed});
  }
  ModelPolicy file;
  if (!o.policy_file.empty()) {
    TIDAL_RETURN_IF_ERROR(read_policy_file(o.policy_file, &file).with_context("--policy-file"));
  }
  for (const std::string& name : o.policies) {
    model::AttentionKind kind;
    TIDAL_RETURN_IF_ERROR(model::parse_attention_kind(name, &kind).with_context("--policy"));
    TIDAL_RETURN_IF_ERROR(
        note_once(model::attention_kind_name(kind), name, "--policy", &policies_seen));
    if (kind == model::AttentionKind::kFull) {
      out->push_back({name, "-", 0, model::AttentionPolicy()});
      continue;
    }
    for (int64_t k : budgets) {
      Variant v{name, "-", k, model::AttentionPolicy()};
      v.attention.kind = kind;
      if (kind == model::AttentionKind::kQuest) {
        v.attention.quest.budget = k;
        v.attention.quest.page_size = o.page_size;
        out->push_back(v);
        continue;
      }
      for (const auto& [g, parsed] : granularities) {
        v.granularity = g;
        v.attention.tidal.granularity = parsed;
        // Per-query-head lists never span ranks: one row, under the first agreement.
        const bool may_span = v.attention.tidal.granularity != model::Granularity::kPerQueryHead;
        v.agreement = may_span ? agreements[0] : "-";
        TIDAL_RETURN_IF_ERROR(model::parse_agreement(agreements[0], &v.attention.tidal.agreement));
        v.attention.tidal.budget = k;
        v.attention.tidal.sparse_start = o.sparse_start;
        if (o.reselect_layers == "none") {
          v.attention.tidal.reselect_layers = std::vector<int64_t>();
        } else if (!o.reselect_layers.empty()) {
          std::vector<int32_t> layers;
          TIDAL_RETURN_IF_ERROR(
              parse_id_list(o.reselect_layers, &layers).with_context("--reselect-layers"));
          v.attention.tidal.reselect_layers = std::vector<int64_t>(layers.begin(), layers.end());
        }
        if (file.found() && !o.layers_given) {
          v.attention.tidal.sparse_start = file.sparse_start;
          v.attention.tidal.reselect_layers = file.reselect_layers;
        }
        out->push_back(v);
        for (size_t a = 1; may_span && a < agreements.size(); ++a) {
          v.agreement = agreements[a];
          TIDAL_RETURN_IF_ERROR(model::parse_agreement(v.agreement, &v.attention.tidal.agreement));
          out->push_back(v);
        }
      }
    }
  }
  return ok_status();
}

// The device-to-device copy bandwidth (bytes read + written per second), median of 20 copies of
// 1 GiB, or 0 on the CPU.
double measure_copy_bytes_per_s(Device device, Stream stream) {
  if (device.kind != DeviceKind::kCuda) return 0.0;
  const size_t bytes = size_t(1) << 30;
  void *a = nullptr, *b = nullptr;
  if (!device_malloc(bytes, "the copy benchmark", &a).ok()) return 0.0;
  if (!device_malloc(bytes, "the copy benchmark", &b).ok()) {
    device_free(a);
    return 0.0;
  }
  fill_bytes(a, device, 0x3c, bytes, stream);
  Event start, stop;
  std::vector<double> ms;
  for (int i = 0; i < 25; ++i) {
    start.record(stream);
    copy_bytes(b, device, a, device, bytes, stream);
    stop.record(stream);
    stop.synchronize();
    if (i >= 5) ms.push_back(double(stop.elapsed_ms_since(start)));
  }
  device_free(a);
  device_free(b);
  return 2.0 * double(bytes) / (bench::summarize(ms).median * 1e-3);
}

// Weight bytes a decode step streams on one rank of `shard`: every weight it holds once, except
// an embedding table that is not also its LM head (a lookup reads one row).
double weight_stream_bytes(const model::ModelConfig& c, DType dtype,
                           const model::ModelShard& shard) {
  const double all = double(model::llama_weight_bytes(c, dtype, &shard));
  if (!shard.first_stage() || (c.tie_word_embeddings && shard.last_stage())) return all;
  return all - double(shard.local(c).vocab * c.hidden) * double(dtype_size(dtype));
}

// KV bytes a step reads (over the whole model), by what divides them among TP ranks: the rows
// every query head of a KV head reads together (dense and selection layers, Quest's page
// bounds), and the rows read per list or query head (sparse layers, Quest's chosen pages).
struct KvBytes {
  double per_kv_head = 0;
  double per_list = 0;
};

KvBytes kv_bytes_read(const model::ModelConfig& c, DType dtype, engine::KvDtype kv,
                      const model::AttentionStats& s) {
  const double row_bytes = double(c.head_dim) * double(dtype_size(dtype));
  // FP8: a byte per element and a 4-byte scale per K or V row; Quest's bounds stay in `dtype`.
  const double kv_row = kv == engine::KvDtype::kFp8 ? double(c.head_dim) + 4.0 : row_bytes;
  auto rows = [&](model::LayerRole r) { return 2.0 * double(s.rows[int(r)]) * kv_row; };
  KvBytes b;
  b.per_kv_head = rows(model::LayerRole::kDense) + rows(model::LayerRole::kSelect) +
                  double(s.quest_metadata_rows) * row_bytes;
  b.per_list = rows(model::LayerRole::kSparse) + rows(model::LayerRole::kQuest);
  return b;
}

// Bytes on a step's slowest path through the ranks, which bounds the step from below at the copy
// bandwidth: pipeline stages run one after another and a stage's TP ranks side by side, so a
// step streams at least, summed over the stages, one TP rank's part (the parts of a stage are
// equal: TP splits heads, FFN and vocabulary evenly). TP rank 0's KV heads read their share of
// `kv`; rows read per list count at the smaller of its KV- and query-head shares (a lower bound
// whichever lists the policy has). On one rank: every weight once plus all of `kv`.
Status step_floor_bytes(const model::ModelConfig& c, DType dtype, const engine::Distributed* dist,
                        const KvBytes& kv, double* out) {
  if (dist == nullptr) {
    *out = weight_stream_bytes(c, dtype, model::whole_model(c)) + kv.per_kv_head + kv.per_list;
    return ok_status();
  }
  double bytes = 0;
  model::ModelShard shard;
  for (int stage = 0; stage < dist->parallel.pp_size; ++stage) {
    TIDAL_RETURN_IF_ERROR(model::make_model_shard(c, dist->parallel, {0, stage}, &shard));
    bytes += weight_stream_bytes(c, dtype, shard);
  }
  const double kv_share = double(shard.heads.kv_heads.size) / double(c.num_kv_heads);
  const double q_share = double(shard.heads.q_heads.size) / double(c.num_heads);
  *out = bytes + kv.per_kv_head * kv_share + kv.per_list * std::min(kv_share, q_share);
  return ok_status();
}

// Stats accumulated between two snapshots (the overlap counters are not needed here).
model::AttentionStats minus(model::AttentionStats a, const model::AttentionStats& b) {
  for (int i = 0; i < 4; ++i) {
    a.rows[i] -= b.rows[i];
    a.layer_steps[i] -= b.layer_steps[i];
  }
  a.quest_metadata_rows -= b.quest_metadata_rows;
  a.decode_steps -= b.decode_steps;
  return a;
}

std::vector<Column> columns() {
  return {{"device", 12, false, 0},  {"preset", 10, false, 0},       {"context", 8, true, 0},
          {"batch", 5, true, 0},     {"policy", 6, false, 0},        {"granularity", 14, false, 0},
          {"agree", 6, false, 0},    {"budget", 6, true, 0},         {"ms", 8, true, 3},
          {"p90_ms", 8, true, 3},    {"min_ms", 8, true, 3},         {"tok/s", 9, true, 1},
          {"graph_ms", 8, true, 3},  {"attn_ms", 8, true, 3},
          {"dense_ms", 8, true, 3},  {"select_ms", 9, true, 3},      {"sparse_ms", 9, true, 3},
          {"quest_ms", 8, true, 3},  {"ar_ms", 7, true, 3},          {"ar_us/L", 7, true, 1},
          {"%ar", 5, true, 1},       {"agree_us/sel", 12, true, 1},  {"GB", 7, true, 2},
          {"floor_ms", 8, true, 3},  {"%floor", 6, true, 1},         {"GiB/rank", 8, true, 2},
          {"copy_tbps", 9, true, 2}, {"prefill_tok/s", 13, true, 0}, {"#wrong", 6, true, 0}};
}

// --kernel-trace: each row's kernels, under its label.
struct TraceRows {
  std::vector<std::string> labels;
  std::vector<std::vector<KernelRecord>> rows;
};

struct Run {
  model::ModelConfig config;
  engine::EngineConfig engine;
  std::string device_name;
  double copy_bytes_per_s = 0;
  double rank_gib = 0;  // the largest rank's memory: weights, KV cache and workspace
  TraceRows* trace = nullptr;  // --kernel-trace (one rank, GPU)
};

// One configuration: `batch` sequences of `context` positions, sequence i under
// variants[i % variants.size()] (one variant: a uniform batch; several: a mixed one); adds its row.
Status bench_one(const BenchOptions& o, const Run& run, engine::Engine& e, int64_t context,
                 int64_t batch, const std::vector<Variant>& variants, bench::Table* table) {
  const model::ModelConfig& c = run.config;
  const bool gpu = run.engine.device.kind == DeviceKind::kCuda;
  const Variant& v = variants[0];  // names the row, and times the breakdown's layer roles
  std::vector<engine::SeqId> ids(static_cast<size_t>(batch));
  std::vector<double> prefill_tok_s;  // each sequence's prefill (--prefill), one sample each
  if (o.prefill && gpu) {
    // One untimed prefill chunk first, released at once: the first prefill of an engine pays
    // one-time costs (lazy module loading of the prefill kernels, the GEMMs' algorithm choices),
    // which would otherwise land in the first row's prefill_tok/s (at batch 1 its only sample).
    std::vector<int32_t> warm(static_cast<size_t>(std::min(context, run.engine.prefill_chunk)));
    for (size_t t = 0; t < warm.size(); ++t) {
      warm[t] = int32_t(kernels::random_bits(o.seed + 7, uint64_t(t)) % uint64_t(c.vocab));
    }
    engine::SequenceOptions opts;
    opts.attention = v.attention;
    engine::SeqId warm_id = 0;
    TIDAL_RETURN_IF_ERROR(e.add_sequence(warm, opts, &warm_id));
    const Status warmed = e.prefill(warm_id, TensorView());
    e.release(warm_id);
    TIDAL_RETURN_IF_ERROR(warmed.with_context("the untimed warm-up prefill"));
  }
  for (int64_t i = 0; i < batch; ++i) {
    engine::SequenceOptions opts;
    opts.attention = variants[size_t(i) % variants.size()].attention;
    opts.sampling.temperature = 0.0f;  // greedy: the sampled token feeds the next step
    const uint64_t seed = o.seed * 1000003u + uint64_t(i);
    if (o.prefill) {
      std::vector<int32_t> prompt(static_cast<size_t>(context));
      for (int64_t t = 0; t < context; ++t) {
        prompt[size_t(t)] = int32_t(kernels::random_bits(seed, uint64_t(t)) % uint64_t(c.vocab));
      }
      TIDAL_RETURN_IF_ERROR(e.add_sequence(prompt, opts, &ids[size_t(i)]));
      Mark start(gpu), stop(gpu);
      start.record(e.stream());
      int32_t first = 0;
      TIDAL_RETURN_IF_ERROR(e.prefill(ids[size_t(i)], TensorView(), &first));
      stop.record(e.stream());
      stop.wait();
      prefill_tok_s.push_back(double(context) / (stop.ms_since(start) * 1e-3));
    } else {
      TIDAL_RETURN_IF_ERROR(e.add_random_sequence(context, opts, seed, &ids[size_t(i)]));
    }
  }
  std::vector<int32_t> tokens(static_cast<size_t>(batch), 1), next;
  auto step = [&]() -> Status {
    TIDAL_RETURN_IF_ERROR(e.decode(ids, tokens, TensorView(), &next));
    tokens = next;
    return ok_status();
  };
  for (int64_t s = 0; s < o.warmup; ++s) TIDAL_RETURN_IF_ERROR(step());
  int64_t wrong = 0;  // a sampled id outside the vocabulary is a broken step
  std::vector<model::AttentionStats> before;
  for (engine::SeqId id : ids) before.push_back(e.stats(id));
  Mark start(gpu), stop(gpu);
  std::vector<double> ms;
  for (int64_t s = 0; s < o.steps; ++s) {
    start.record(e.stream());
    TIDAL_RETURN_IF_ERROR(step());
    stop.record(e.stream());
    stop.wait();
    ms.push_back(stop.ms_since(start));
    for (int32_t t : next) wrong += t < 0 || t >= c.vocab;
  }
  KvBytes kv;  // read by one step, over the batch
  for (size_t i = 0; i < ids.size(); ++i) {
    const model::AttentionStats d = minus(e.stats(ids[i]), before[i]);
    const KvBytes b = kv_bytes_read(c, run.engine.dtype, run.engine.kv_dtype, d);
    const double steps = double(std::max<int64_t>(d.decode_steps, 1));
    kv.per_kv_head += b.per_kv_head / steps;
    kv.per_list += b.per_list / steps;
  }
  // The step's device time alone: its graph replayed back to back (one rank, graphs on), so no
  // host planning, plan upload wait or launch latency between steps; ms - graph_ms is what the
  // host adds to a step.
  // --kernel-trace: the kernels of those replays, from CUPTI (the records of the steps before
  // are dropped).
  double graph_ms = NAN;
  std::string trace_summary;
  if (gpu && o.graph_replays > 0 && run.engine.distributed == nullptr) {
    Mark first(gpu), last(gpu);
    uint64_t trace_from = 0;
    if (run.trace != nullptr) {
      stream_synchronize(e.stream());
      TIDAL_RETURN_IF_ERROR(KernelTrace::take(0, 0, nullptr));
      trace_from = KernelTrace::now_ns();
    }
    first.record(e.stream());
    if (e.replay_last_step(o.graph_replays).ok()) {
      last.record(e.stream());
      last.wait();
      graph_ms = last.ms_since(first) / double(o.graph_replays);
      if (run.trace != nullptr) {
        std::vector<KernelRecord> kernels;
        TIDAL_RETURN_IF_ERROR(KernelTrace::take(trace_from, KernelTrace::now_ns(), &kernels));
        std::string label = c.name + " context " + std::to_string(context) + " batch " +
                            std::to_string(batch) + " " + (variants.size() > 1 ? "mixed" : v.policy);
        if (variants.size() == 1 && v.granularity != "-") label += " " + v.granularity;
        if (variants.size() == 1 && v.budget > 0) label += " K " + std::to_string(v.budget);
        trace_summary =
            format_kernel_summary(label, summarize_kernels(kernels, o.graph_replays), 16);
        run.trace->labels.push_back(label);
        run.trace->rows.push_back(std::move(kernels));
      }
    }
  }
  // Attention by layer role: one more step, eager, with events around each layer's attention
  // and (under --tp) around rank 0's all-reduces and list agreements.
  double role_ms[4] = {0, 0, 0, 0}, attn_ms = NAN;
  CommTimes comm;
  if (o.breakdown && variants.size() == 1) {
    const std::vector<int64_t> reselect = model::reselect_layers(v.attention, c);
    std::vector<std::unique_ptr<Mark>> marks;
    for (int64_t l = 0; l < 2 * c.num_layers; ++l) marks.push_back(std::make_unique<Mark>(gpu));
    e.set_attention_marker([&](int64_t layer, bool after) {
      marks[size_t(2 * layer + (after ? 1 : 0))]->record(e.stream());
    });
    CommMarks comm_marks(gpu, c.num_layers);
    // All-reduces and agreement only where rank 0 has TP peers.
    const bool parallel =
        run.engine.distributed != nullptr && run.engine.distributed->parallel.tp_size > 1;
    if (parallel) {
      e.set_comm_marker(
          [&](model::CommSpan span, bool after) { comm_marks.record(span, after, e.stream()); });
    }
    Mark step_start(gpu), step_end(gpu);
    step_start.record(e.stream());
    const Status st = step();
    step_end.record(e.stream());
    e.set_attention_marker(nullptr);
    if (parallel) e.set_comm_marker(nullptr);
    TIDAL_RETURN_IF_ERROR(st);
    step_end.wait();
    comm_marks.wait();
    attn_ms = 0;
    // Rank 0's layers only: under --pp the others' marks were never recorded.
    for (int64_t l = e.shard().layer_begin; l < e.shard().layer_end; ++l) {
      const double t = marks[size_t(2 * l + 1)]->ms_since(*marks[size_t(2 * l)]);
      role_ms[int(model::layer_role(v.attention, reselect, l))] += t;
      attn_ms += t;
    }
    if (parallel) {
      comm = comm_marks.times();
      comm.step_ms = step_end.ms_since(step_start);
      const model::ModelShard& shard = e.shard();
      comm.rank0_layers = shard.layer_end - shard.layer_begin;
      for (int64_t l = shard.layer_begin; l < shard.layer_end; ++l) {
        comm.selection_layers +=
            model::layer_role(v.attention, reselect, l) == model::LayerRole::kSelect;
      }
    }
  }
  for (engine::SeqId id : ids) e.release(id);
  const bench::SampleStats st = bench::summarize(ms);
  double bytes = 0;
  TIDAL_RETURN_IF_ERROR(step_floor_bytes(c, run.engine.dtype, run.engine.distributed, kv, &bytes));
  // Under --pp a step of several sequences crosses the stages in micro-batches that overlap, so
  // the stages' sum bounds nothing: no floor is given.
  const engine::Distributed* dist = run.engine.distributed;
  if (dist != nullptr && dist->parallel.pp_size > 1 && batch > 1) bytes = std::nan("");
  const double floor_ms =
      run.copy_bytes_per_s > 0 ? bytes / run.copy_bytes_per_s * 1e3 : std::nan("");
  const bool mixed = variants.size() > 1;
  auto role = [&](model::LayerRole r) {
    return o.breakdown && !mixed ? role_ms[int(r)] : std::nan("");
  };
  // NaN where no list was agreed (lists on one rank, or no selection layer on rank 0).
  const double agree_us = comm.selection_layers > 0
                              ? comm.agreement_ms * 1e3 / double(comm.selection_layers)
                              : std::nan("");
  table->add_row({run.device_name,
                  c.name,
                  context,
                  batch,
                  mixed ? "mixed" : v.policy,
                  mixed ? "-" : v.granularity,
                  mixed ? "-" : v.agreement,
                  v.budget > 0 && !mixed ? Cell(v.budget) : Cell(std::nan("")),
                  st.median,
                  st.p90,
                  st.min,
                  double(batch) / (st.median * 1e-3),
                  graph_ms,
                  attn_ms,
                  role(model::LayerRole::kDense),
                  role(model::LayerRole::kSelect),
                  role(model::LayerRole::kSparse),
                  role(model::LayerRole::kQuest),
                  comm.all_reduce_ms,
                  comm.all_reduce_ms * 1e3 / double(std::max<int64_t>(comm.rank0_layers, 1)),
                  100.0 * comm.all_reduce_ms / comm.step_ms,
                  agree_us,
                  bytes / 1e9,
                  floor_ms,
                  100.0 * floor_ms / st.median,
                  run.rank_gib,
                  // No copy is measured on the CPU: "-", not a 0.00 TB/s that reads as a GPU's.
                  run.copy_bytes_per_s > 0 ? run.copy_bytes_per_s / 1e12 : std::nan(""),
                  prefill_tok_s.empty() ? NAN : bench::summarize(prefill_tok_s).median,
                  wrong});
  if (!trace_summary.empty()) {
    std::printf("%s", trace_summary.c_str());
    std::fflush(stdout);
  }
  return ok_status();
}

// The rows of `batches` (every variant, every context) on one engine sized for max_batch
// sequences. *no_fit: the engine's memory plan did not fit (kOutOfMemory before anything was
// made or run), so the caller may try smaller engines.
Status bench_engine(const BenchOptions& o, const std::string& preset,
                    const std::vector<int64_t>& contexts, const std::vector<int64_t>& batches,
                    int64_t max_batch, const std::vector<Variant>& variants, Run run,
                    bench::Table* table, bool* no_fit) {
  *no_fit = false;
  model::ModelConfig& c = run.config;
  const int64_t max_ctx = *std::max_element(contexts.begin(), contexts.end());
  const int64_t per_seq = max_ctx + o.warmup + o.steps + 2;
  // A latency benchmark: positions past the checkpoint's trained context only extrapolate RoPE.
  c.max_position_embeddings = std::max(c.max_position_embeddings, per_seq);
  const int64_t kv = max_batch * per_seq;
  run.engine.max_batch = max_batch;
  run.engine.max_context = per_seq;
  run.engine.kv_capacity = kv + max_batch * run.engine.page_size;
  int64_t max_budget = 2;
  bool quest = false;
  for (const Variant& v : variants) {
    max_budget = std::max(max_budget, v.budget);
    quest = quest || v.attention.kind == model::AttentionKind::kQuest;
  }
  run.engine.max_budget = max_budget;
  // Quest's page bounds only when a Quest row runs: `full` and `tidal` do not pay for them (a
  // launch per layer a step, as in an engine that serves no Quest request).
  run.engine.quest_bounds = quest;
  // Under mpirun (--tp/--pp) each rank makes and holds only its shard; rank 0 runs the
  // benchmark, the other ranks serve its steps until it moves to the next preset.
  const engine::Distributed* dist = run.engine.distributed;
  std::unique_ptr<engine::Engine> e;
  const Status made = create_random_engine(c, o.seed, run.engine, &e);
  if (made.code() == StatusCode::kOutOfMemory) *no_fit = true;
  TIDAL_RETURN_IF_ERROR(made);
  // Every rank's memory plan, to rank 0: the largest says what GPU a layout needs.
  int64_t mine = int64_t(e->memory_plan().total_bytes());
  std::vector<int64_t> rank_bytes = {mine};
  if (dist != nullptr) {
    rank_bytes.resize(size_t(dist->world->size()));
    dist->world->all_gather(make_view(rank_bytes.data(), DType::kI64, {int64_t(rank_bytes.size())}),
                            make_view(&mine, DType::kI64, {1}));
  }
  if (dist != nullptr && dist->rank() != 0) return e->serve();
  run.rank_gib =
      double(*std::max_element(rank_bytes.begin(), rank_bytes.end())) / double(1ull << 30);
  // Long prefills (--prefill) and random KV fills show progress on stderr.
  Progress progress(o.prefill ? "prefill" : "random KV fill", "tokens");
  e->set_progress([&](int64_t done, int64_t total) {
    if (done == 0) progress.start(total);
    progress.update(done);
    if (done == total) progress.finish();
  });
  std::fprintf(stderr, "tidal bench: %s on %s: weights %.2f GiB, KV %.2f GiB for %lld tokens%s\n",
               preset.c_str(), run.device_name.c_str(),
               double(e->memory_plan().weight_bytes) / double(1ull << 30),
               double(e->memory_plan().kv_bytes) / double(1ull << 30),
               static_cast<long long>(e->memory_plan().kv_capacity_tokens),
               dist != nullptr ? " (rank 0's shard)" : "");
  if (dist != nullptr) {
    std::string line = "tidal bench: memory per rank (weights + KV + workspace):";
    for (size_t r = 0; r < rank_bytes.size(); ++r) {
      char part[64];
      std::snprintf(part, sizeof(part), "%s rank %zu %.2f GiB", r ? "," : "", r,
                    double(rank_bytes[r]) / double(1ull << 30));
      line += part;
    }
    std::fprintf(stderr, "%s\n", line.c_str());
    if (dist->parallel.tp_size > 1) {
      std::fprintf(stderr, "tidal bench: row-parallel all-reduces: %s partial sums, %s\n",
                   e->f32_partials() ? "f32" : dtype_name(run.engine.dtype),
                   e->registered_partials() ? "on the TP group's registered memory (NCCL "
                                              "symmetric window)"
                                            : "on plain device memory");
    }
  }
  for (int64_t ctx : contexts) {
    if (o.mixed) {  // every variant in one batch, one sequence each
      TIDAL_RETURN_IF_ERROR(bench_one(o, run, *e, ctx, int64_t(variants.size()), variants, table)
                                .with_context(preset + " at " + std::to_string(ctx)));
      continue;
    }
    for (int64_t b : batches) {
      for (const Variant& v : variants) {
        TIDAL_RETURN_IF_ERROR(bench_one(o, run, *e, ctx, b, {v}, table)
                                  .with_context(preset + " at " + std::to_string(ctx)));
      }
    }
  }
  return ok_status();
}

// Under --tp/--pp, after an engine's rows: rank 0's engine has ended, which let the others leave
// serve(). They learn here whether rank 0 ran every row, so a row that failed there stops them
// too, rather than leave them making the next engine, a collective rank 0 never joins.
// Collective; rank 0 keeps its own status (its message whole), the others take the agreed one.
Status agree_on_rows(const Run& run, const Status& mine) {
  const engine::Distributed* dist = run.engine.distributed;
  if (dist == nullptr) return mine;
  const Status all = engine::agree_status(*dist->world, mine);
  return dist->rank() == 0 && !mine.ok() ? mine : all;
}

// The rows of `variants` for a preset (run.config already its model; max_batch checked). When
// the engine for the largest batch does not fit the device, each batch size gets its own
// engine, smallest first: the sizes that fit still run, and the others are named in *skipped
// (the caller reports them after writing the table). Under --tp/--pp every rank takes the same
// path: the fit check is agreed over the ranks.
Status bench_variants(const BenchOptions& o, const std::string& preset,
                      const std::vector<int64_t>& contexts, const std::vector<int64_t>& batches,
                      int64_t max_batch, const std::vector<Variant>& variants, const Run& run,
                      bench::Table* table, std::vector<std::string>* skipped) {
  bool no_fit = false;
  const Status all = agree_on_rows(
      run, bench_engine(o, preset, contexts, batches, max_batch, variants, run, table, &no_fit));
  std::vector<int64_t> sizes(batches);  // distinct (parse_count_list)
  std::sort(sizes.begin(), sizes.end());
  if (!no_fit || o.mixed || sizes.size() < 2) return all;
  const bool worker = run.engine.distributed != nullptr && run.engine.distributed->rank() != 0;
  for (const int64_t b : sizes) {
    const Status one = agree_on_rows(
        run, bench_engine(o, preset, contexts, {b}, b, variants, run, table, &no_fit));
    if (!no_fit) {
      TIDAL_RETURN_IF_ERROR(one);
      continue;
    }
    skipped->push_back(preset + " at batch " + std::to_string(b) + ": " + one.message());
    if (!worker) {
      std::fprintf(stderr, "tidal bench: %s at batch %lld does not fit: its rows are skipped\n",
                   preset.c_str(), static_cast<long long>(b));
    }
  }
  return ok_status();
}

// A preset's rows. Quest rows run on an engine of their own, which keeps Quest's page bounds;
// the others on one without them, since an engine that keeps the bounds updates them at every
// step (a launch per layer) and `full` and `tidal` rows would pay for it. --mixed puts every
// variant in one batch: one engine, with the bounds when a Quest row is among them. Every rank
// under --tp/--pp splits the variants the same way, so the engines follow in step.
Status bench_preset(const BenchOptions& o, const std::string& preset,
                    const std::vector<int64_t>& contexts, const std::vector<int64_t>& batches,
                    const std::vector<Variant>& variants, Run run, bench::Table* table,
                    std::vector<std::string>* skipped) {
  const int64_t max_ctx = *std::max_element(contexts.begin(), contexts.end());
  const int64_t max_batch =
      o.mixed ? int64_t(variants.size()) : *std::max_element(batches.begin(), batches.end());
  // A rank given other flags (mpirun's A : B) fails these alone: under --tp/--pp the ranks agree
  // on them before the engine's collectives.
  Status checked = [&]() -> Status {
    TIDAL_RETURN_IF_ERROR(launch_preset(preset, &run.config));
    // Bounded before any product is taken (and before anything is allocated).
    if (max_ctx + o.warmup + o.steps + 2 > engine::kMaxContext) {
      return invalid_argument("--context " + std::to_string(max_ctx) +
                              " (with --warmup and --steps) exceeds " +
                              std::to_string(engine::kMaxContext) + " tokens");
    }
    if (max_batch > engine::kMaxBatch) {
      return invalid_argument("--batch " + std::to_string(max_batch) + " exceeds " +
                              std::to_string(engine::kMaxBatch));
    }
    return ok_status();
  }();
  const engine::Distributed* dist = run.engine.distributed;
  if (dist != nullptr) checked = engine::agree_status(*dist->world, checked);
  TIDAL_RETURN_IF_ERROR(checked);
  std::vector<Variant> plain, quest;
  for (const Variant& v : variants) {
    (v.attention.kind == model::AttentionKind::kQuest ? quest : plain).push_back(v);
  }
  if (o.mixed || plain.empty() || quest.empty()) {
    return bench_variants(o, preset, contexts, batches, max_batch, variants, run, table, skipped);
  }
  TIDAL_RETURN_IF_ERROR(
      bench_variants(o, preset, contexts, batches, max_batch, plain, run, table, skipped));
  return bench_variants(o, preset, contexts, batches, max_batch, quest, run, table, skipped);
}

// "a,b,c" (the lists a rank was given, for the message below).
template <typename T>
std::string joined(const std::vector<T>& items) {
  std::string text;
  for (const T& item : items) {
    if (!text.empty()) text += ',';
    if constexpr (std::is_same_v<T, std::string>) {
      text += item;
    } else {
      text += std::to_string(item);
    }
  }
  return text;
}

// Under --tp/--pp the other ranks make rank 0's engines, one after another, from their own lists
// (they serve its rows): a rank given other lists (mpirun's A : B) would make another number of
// engines, and wait for ever in a collective the others never join. Each (flag, list) is compared
// with rank 0's, in order. Collective; every rank returns the same status.
Status same_lists_as_rank0(parallel::Communicator& world,
                           const std::vector<std::pair<const char*, std::string>>& lists) {
  for (const auto& [flag, mine] : lists) {
    std::string first, theirs;
    const int r = engine::rank_differing_from_rank0(world, mine, &first, &theirs);
    if (r < 0) continue;
    return invalid_argument("ranks differ in " + std::string(flag) + ": rank 0 has " + first +
                            ", rank " + std::to_string(r) + " has " + theirs +
                            "; every rank must be given the same model and settings");
  }
  return ok_status();
}

}  // namespace

Status run_bench(const BenchOptions& o) { return run_bench_on(o, nullptr); }

Status run_bench_on(const BenchOptions& o, const engine::Distributed* dist) {
  const bool worker = dist != nullptr && dist->rank() != 0;  // serves rank 0; prints nothing
  std::vector<int64_t> contexts, batches, budgets;
  Run run;
  std::vector<Variant> variants;
  // Everything before the first engine. Under --tp/--pp a rank may fail it alone (mpirun's
  // A : B gives ranks other flags; a rank's GPU): the ranks agree on it before the engines'
  // collectives, and rank 0 names the rank.
  Status ready = [&]() -> Status {
    TIDAL_RETURN_IF_ERROR(parse_count_list(o.contexts, "--context", &contexts));
    TIDAL_RETURN_IF_ERROR(parse_count_list(o.batches, "--batch", &batches));
    TIDAL_RETURN_IF_ERROR(parse_count_list(o.budgets, "--budget", &budgets));
    // Every preset's name is known before the first preset's rows (and before the ranks compare
    // their lists); a preset listed twice (its rows twice) is refused.
    std::map<std::string, std::string> presets_seen;
    for (const std::string& preset : o.presets) {
      model::ModelConfig known;
      TIDAL_RETURN_IF_ERROR(launch_preset(preset, &known));
      TIDAL_RETURN_IF_ERROR(note_once(preset, preset, "--preset", &presets_seen));
    }
    if (o.steps < 1 || o.steps > 1000000 || o.warmup < 0 || o.warmup > 1000000) {
      return invalid_argument("--steps must be in [1, 1000000] and --warmup in [0, 1000000]");
    }
    if (o.graph_replays < 0 || o.graph_replays > engine::kMaxGraphReplays) {
      return invalid_argument("--graph-replays must be in [0, " +
                              std::to_string(engine::kMaxGraphReplays) + "], got " +
                              std::to_string(o.graph_replays));
    }
    run.engine.page_size = o.page_size;
    run.engine.prefill_chunk = o.prefill_chunk;
    run.engine.distributed = dist;
    TIDAL_RETURN_IF_ERROR(apply_device_flags(o.device, &run.engine));
    // The settings the flags give, by flag, before anything runs (bench sizes the rest itself).
    TIDAL_RETURN_IF_ERROR(name_flags(run.engine.validate()));
    if (!o.kernel_trace_path.empty() &&
        (run.engine.device.kind != DeviceKind::kCuda || dist != nullptr || o.graph_replays < 1 ||
         !run.engine.cuda_graphs)) {
      return invalid_argument(
          "--kernel-trace traces the graph replays of graph_ms: it needs a GPU, one rank, CUDA "
          "graphs and --graph-replays >= 1");
    }
    TIDAL_RETURN_IF_ERROR(build_variants(o, budgets, &variants));
    // Rank 0 writes the table at the end: a path it cannot write fails now, not after the run.
    for (const auto& [flag, path] : {std::pair{"--json", &o.json_path}, {"--csv", &o.csv_path}}) {
      if (worker || path->empty()) continue;
      if (!std::ofstream(*path, std::ios::app)) {  // appending keeps what it holds until then
        return not_found(std::string(flag) + " " + *path + ": cannot open for writing");
      }
    }
    run.device_name = "cpu";
    if (run.engine.device.kind == DeviceKind::kCuda) {
      DeviceInfo info;
      TIDAL_RETURN_IF_ERROR(cuda_device_info(run.engine.device.index, &info));
      TIDAL_RETURN_IF_ERROR(set_cuda_device(run.engine.device.index));
      run.device_name = info.name;
      Stream s;
      TIDAL_RETURN_IF_ERROR(stream_create(&s));
      if (!worker) run.copy_bytes_per_s = measure_copy_bytes_per_s(run.engine.device, s);
      stream_destroy(s);
    }
    return ok_status();
  }();
  if (dist != nullptr) ready = engine::agree_status(*dist->world, ready);
  TIDAL_RETURN_IF_ERROR(ready);
  if (dist != nullptr) {  // the lists that say which engines and rows run (counts as parsed)
    TIDAL_RETURN_IF_ERROR(
        same_lists_as_rank0(*dist->world, {{"--preset", joined(o.presets)},
                                           {"--context", joined(contexts)},
                                           {"--batch", joined(batches)},
                                           {"--policy", joined(o.policies)},
                                           {"--budget", joined(budgets)},
                                           {"--granularity", joined(o.granularities)},
                                           {"--agreement", joined(o.agreements)},
                                           {"--mixed", o.mixed ? "--mixed" : "no --mixed"}}));
  }
  if (worker) {
    std::vector<std::string> skipped;  // rank 0 reports them
    for (const std::string& preset : o.presets) {
      TIDAL_RETURN_IF_ERROR(
          bench_preset(o, preset, contexts, batches, variants, run, nullptr, &skipped));
    }
    return ok_status();
  }
  bench::BenchInfo bi = bench::collect_bench_info("tidal bench");
  bi.device = run.device_name;
  const bool gpu = run.engine.device.kind == DeviceKind::kCuda;
  // --kernel-trace: CUPTI on before any engine (and so any graph) exists.
  TraceRows trace;
  if (!o.kernel_trace_path.empty()) {
    TIDAL_RETURN_IF_ERROR(KernelTrace::begin());
    run.trace = &trace;
  }
  char copy[64];
  std::snprintf(copy, sizeof(copy), "%.3f TB/s (read + write)", run.copy_bytes_per_s / 1e12);
  bi.extra = {{"dtype", dtype_name(run.engine.dtype)},
              {"kv_dtype", engine::kv_dtype_name(run.engine.kv_dtype, run.engine.dtype)},
              {"graphs", !gpu                     ? "n/a (cpu)"
                         : run.engine.cuda_graphs ? "on"
                                                  : "off (eager)"},
              {"copy", gpu ? copy : "n/a (cpu)"},
              {"steps", std::to_string(o.steps) + " timed after " + std::to_string(o.warmup)},
              {"kv", o.prefill ? "prefilled random prompts" : "random values, no prefill"}};
  if (run.trace != nullptr) {
    bi.extra.push_back({"kernel_trace", o.kernel_trace_path + " (CUPTI on: every step is timed "
                                                              "with its kernels traced)"});
  }
  if (dist != nullptr) {
    bi.extra.push_back({"parallel", "tp " + std::to_string(dist->parallel.tp_size) + " x pp " +
                                        std::to_string(dist->parallel.pp_size) +
                                        " (mpirun; graphs as above, except steps with exact "
                                        "agreement and micro-batches: eager)"});
  }
  bench::Table table(bi, columns());
  table.print_header(
      {gpu ? "ms / p90_ms / min_ms: per-step latency (CUDA events around each decode step, host "
             "planning"
           : "ms / p90_ms / min_ms: per-step latency (CPU reference path: the host clock around each "
             "decode step,",
       gpu ? "included), median, p90 and min. graph_ms: the last step's CUDA graph replayed"
           : "all of it host work), median, p90 and min; no copy is measured on the CPU, so no "
             "floor. graph_ms (GPU): the last step's CUDA graph replayed",
       "--graph-replays times back to back, a replay's mean (one rank): the step without the host's",
       "planning and launch between steps. attn_ms: the attention launches of one more (eager) step,",
       "by layer role (under --tp/--pp: rank 0's, in its stage's layers). Of that step on rank 0",
       "under --tp: ar_ms, the activation all-reduces (waits for the other ranks included);",
       "ar_us/L, ar_ms per layer of rank 0; %ar, their share of the step; agree_us/sel, list",
       "agreement per selection layer (agree: approx or exact; on one rank both rows run the same",
       "code). GB: bytes on the step's slowest path (one rank: weights once + KV rows read; under",
       "--tp/--pp one TP rank's part of each stage, summed; none under --pp at batch >= 2, whose",
       "micro-batches overlap the stages). floor_ms = GB / copy. %floor = floor_ms / ms. GiB/rank:",
       "the largest rank's weights + KV cache + workspace. prefill_tok/s (--prefill): the median",
       "over the batch's sequences of one prefill each (after one untimed prefill chunk on the",
       "GPU, so no row pays the engine's first-prefill costs). #wrong: sampled ids outside the",
       "vocabulary."});
  std::vector<std::string> skipped;  // batch sizes whose engine does not fit
  for (const std::string& preset : o.presets) {
    TIDAL_RETURN_IF_ERROR(
        bench_preset(o, preset, contexts, batches, variants, run, &table, &skipped));
  }
  TIDAL_RETURN_IF_ERROR(table.write_files(o.json_path, o.csv_path));
  if (run.trace != nullptr) {
    KernelTrace::end();
    TIDAL_RETURN_IF_ERROR(write_chrome_trace(o.kernel_trace_path, trace.labels, trace.rows));
  }
  if (table.failed_rows() > 0) return internal_error("rows with #wrong > 0");
  if (!skipped.empty()) {  // the rows that fit ran and are in the table; the exit says what did not
    std::string what;
    for (const std::string& line : skipped) what += (what.empty() ? "" : "; ") + line;
    return out_of_memory("skipped what does not fit (the other rows ran): " + what);
  }
  return ok_status();
}

}  // namespace tidal::launch
