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
#include <memory>
#include <string>
#include <vector>

#include "benchmarks/common/stats.h"
#include "benchmarks/common/table.h"
#include "kernels/counter_rng.h"
#include "launch/cli.h"
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

struct Variant {
  std::string policy, granularity;
  int64_t budget = 0;  // 0: not applicable (full)
  model::AttentionPolicy attention;
};

Status build_variants(const BenchOptions& o, const std::vector<int64_t>& budgets,
                      std::vector<Variant>* out) {
  ModelPolicy file;
  if (!o.policy_file.empty()) {
    TIDAL_RETURN_IF_ERROR(read_policy_file(o.policy_file, &file).with_context("--policy-file"));
  }
  for (const std::string& name : o.policies) {
    model::AttentionKind kind;
    TIDAL_RETURN_IF_ERROR(model::parse_attention_kind(name, &kind).with_context("--policy"));
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
      for (const std::string& g : o.granularities) {
        v.granularity = g;
        TIDAL_RETURN_IF_ERROR(model::parse_granularity(g, &v.attention.tidal.granularity)
                                  .with_context("--granularity"));
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

// Bytes a decode step streams at least: every weight once (the embedding table only when it is
// also the LM head: a lookup reads one row), plus the KV rows and Quest bounds it reads.
double weight_stream_bytes(const model::ModelConfig& c, DType dtype) {
  const double all = double(model::llama_weight_bytes(c, dtype));
  const double embed = double(c.vocab * c.hidden) * double(dtype_size(dtype));
  return c.tie_word_embeddings ? all : all - embed;
}

double kv_bytes_read(const model::ModelConfig& c, DType dtype, engine::KvDtype kv,
                     const model::AttentionStats& s) {
  int64_t rows = 0;
  for (int64_t r : s.rows) rows += r;
  const double row_bytes = double(c.head_dim) * double(dtype_size(dtype));
  // FP8: a byte per element and a 4-byte scale per K or V row; Quest's bounds stay in `dtype`.
  const double kv_row = kv == engine::KvDtype::kFp8 ? double(c.head_dim) + 4.0 : row_bytes;
  return 2.0 * double(rows) * kv_row + double(s.quest_metadata_rows) * row_bytes;
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
  return {{"device", 12, false, 0},   {"preset", 10, false, 0},  {"context", 8, true, 0},
          {"batch", 5, true, 0},      {"policy", 6, false, 0},   {"granularity", 14, false, 0},
          {"budget", 6, true, 0},     {"ms", 8, true, 3},        {"p90_ms", 8, true, 3},
          {"tok/s", 9, true, 1},      {"attn_ms", 8, true, 3},   {"dense_ms", 8, true, 3},
          {"select_ms", 9, true, 3},  {"sparse_ms", 9, true, 3}, {"quest_ms", 8, true, 3},
          {"GB", 7, true, 2},         {"floor_ms", 8, true, 3},  {"%floor", 6, true, 1},
          {"copy_tbps", 9, true, 2},  {"prefill_tok/s", 13, true, 0}, {"#wrong", 6, true, 0}};
}

struct Run {
  model::ModelConfig config;
  engine::EngineConfig engine;
  std::string device_name;
  double copy_bytes_per_s = 0;
};

// One configuration: `batch` sequences of `context` positions, sequence i under
// variants[i % variants.size()] (one variant: a uniform batch; several: a mixed one); adds its row.
Status bench_one(const BenchOptions& o, const Run& run, engine::Engine& e, int64_t context,
                 int64_t batch, const std::vector<Variant>& variants, bench::Table* table) {
  const model::ModelConfig& c = run.config;
  const bool gpu = run.engine.device.kind == DeviceKind::kCuda;
  const Variant& v = variants[0];  // names the row, and times the breakdown's layer roles
  std::vector<engine::SeqId> ids(static_cast<size_t>(batch));
  double prefill_tok_s = NAN;
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
      prefill_tok_s = double(context) / (stop.ms_since(start) * 1e-3);
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
  double kv_bytes = 0;  // read by one step, over the batch
  for (size_t i = 0; i < ids.size(); ++i) {
    const model::AttentionStats d = minus(e.stats(ids[i]), before[i]);
    kv_bytes += kv_bytes_read(c, run.engine.dtype, run.engine.kv_dtype, d) /
                double(std::max<int64_t>(d.decode_steps, 1));
  }
  // Attention by layer role: one more step, eager, with events around each layer's attention.
  double role_ms[4] = {0, 0, 0, 0}, attn_ms = NAN;
  if (o.breakdown && variants.size() == 1) {
    const std::vector<int64_t> reselect = model::reselect_layers(v.attention, c);
    std::vector<std::unique_ptr<Mark>> marks;
    for (int64_t l = 0; l < 2 * c.num_layers; ++l) marks.push_back(std::make_unique<Mark>(gpu));
    e.set_attention_marker([&](int64_t layer, bool after) {
      marks[size_t(2 * layer + (after ? 1 : 0))]->record(e.stream());
    });
    const Status st = step();
    e.set_attention_marker(nullptr);
    TIDAL_RETURN_IF_ERROR(st);
    marks.back()->wait();
    attn_ms = 0;
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const double t = marks[size_t(2 * l + 1)]->ms_since(*marks[size_t(2 * l)]);
      role_ms[int(model::layer_role(v.attention, reselect, l))] += t;
      attn_ms += t;
    }
  }
  for (engine::SeqId id : ids) e.release(id);
  const bench::SampleStats st = bench::summarize(ms);
  const double bytes = weight_stream_bytes(c, run.engine.dtype) + kv_bytes;
  const double floor_ms =
      run.copy_bytes_per_s > 0 ? bytes / run.copy_bytes_per_s * 1e3 : std::nan("");
  const bool mixed = variants.size() > 1;
  auto role = [&](model::LayerRole r) {
    return o.breakdown && !mixed ? role_ms[int(r)] : std::nan("");
  };
  table->add_row({run.device_name, c.name, context, batch, mixed ? "mixed" : v.policy,
                  mixed ? "-" : v.granularity,
                  v.budget > 0 && !mixed ? Cell(v.budget) : Cell(std::nan("")), st.median, st.p90,
                  double(batch) / (st.median * 1e-3), attn_ms, role(model::LayerRole::kDense),
                  role(model::LayerRole::kSelect), role(model::LayerRole::kSparse),
                  role(model::LayerRole::kQuest), bytes / 1e9, floor_ms,
                  100.0 * floor_ms / st.median, run.copy_bytes_per_s / 1e12, prefill_tok_s,
                  wrong});
  return ok_status();
}

Status bench_preset(const BenchOptions& o, const std::string& preset,
                    const std::vector<int64_t>& contexts, const std::vector<int64_t>& batches,
                    const std::vector<Variant>& variants, Run run, bench::Table* table) {
  TIDAL_RETURN_IF_ERROR(launch_preset(preset, &run.config));
  model::ModelConfig& c = run.config;
  const int64_t max_ctx = *std::max_element(contexts.begin(), contexts.end());
  const int64_t max_batch = o.mixed ? int64_t(variants.size())
                                    : *std::max_element(batches.begin(), batches.end());
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
  TIDAL_RETURN_IF_ERROR(c.validate().with_context(preset));
  // The plan must fit before the weights are made.
  TIDAL_RETURN_IF_ERROR(engine::check_fits(c, run.engine).with_context(preset));
  model::LlamaWeights w;
  model::WeightPlacement placement;
  placement.dtype = run.engine.dtype;
  placement.device = run.engine.device;
  // Under mpirun (--tp/--pp) each rank makes and holds only its shard; rank 0 runs the
  // benchmark, the other ranks serve its steps until it moves to the next preset.
  const engine::Distributed* dist = run.engine.distributed;
  model::ModelShard shard = model::whole_model(c);
  Status made = ok_status();
  if (dist != nullptr) made = model::make_model_shard(c, dist->parallel, dist->coords(), &shard);
  placement.shard = &shard;
  if (made.ok()) made = model::init_random_llama_weights(c, o.seed, &w, placement);
  if (dist != nullptr) made = engine::agree_status(*dist->world, made);
  TIDAL_RETURN_IF_ERROR(made);
  std::unique_ptr<engine::Engine> e;
  TIDAL_RETURN_IF_ERROR(engine::Engine::create(c, std::move(w), run.engine, &e));
  if (dist != nullptr && dist->rank() != 0) return e->serve();
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

}  // namespace

Status run_bench(const BenchOptions& o) { return run_bench_on(o, nullptr); }

Status run_bench_on(const BenchOptions& o, const engine::Distributed* dist) {
  const bool worker = dist != nullptr && dist->rank() != 0;  // serves rank 0; prints nothing
  std::vector<int64_t> contexts, batches, budgets;
  TIDAL_RETURN_IF_ERROR(parse_count_list(o.contexts, "--context", &contexts));
  TIDAL_RETURN_IF_ERROR(parse_count_list(o.batches, "--batch", &batches));
  TIDAL_RETURN_IF_ERROR(parse_count_list(o.budgets, "--budget", &budgets));
  if (o.steps < 1 || o.steps > 1000000 || o.warmup < 0 || o.warmup > 1000000) {
    return invalid_argument("--steps must be in [1, 1000000] and --warmup in [0, 1000000]");
  }
  std::vector<Variant> variants;
  TIDAL_RETURN_IF_ERROR(build_variants(o, budgets, &variants));
  Run run;
  run.engine.page_size = o.page_size;
  run.engine.prefill_chunk = o.prefill_chunk;
  run.engine.distributed = dist;
  TIDAL_RETURN_IF_ERROR(apply_device_flags(o.device, &run.engine));
  run.device_name = "cpu";
  DeviceInfo info;
  if (run.engine.device.kind == DeviceKind::kCuda) {
    TIDAL_RETURN_IF_ERROR(cuda_device_info(run.engine.device.index, &info));
    TIDAL_RETURN_IF_ERROR(set_cuda_device(run.engine.device.index));
    run.device_name = info.name;
    Stream s;
    TIDAL_RETURN_IF_ERROR(stream_create(&s));
    if (!worker) run.copy_bytes_per_s = measure_copy_bytes_per_s(run.engine.device, s);
    stream_destroy(s);
  }
  if (worker) {
    for (const std::string& preset : o.presets) {
      TIDAL_RETURN_IF_ERROR(bench_preset(o, preset, contexts, batches, variants, run, nullptr));
    }
    return ok_status();
  }
  bench::BenchInfo bi = bench::collect_bench_info("tidal bench");
  bi.device = run.device_name;
  const bool gpu = run.engine.device.kind == DeviceKind::kCuda;
  char copy[64];
  std::snprintf(copy, sizeof(copy), "%.3f TB/s (read + write)", run.copy_bytes_per_s / 1e12);
  bi.extra = {{"dtype", dtype_name(run.engine.dtype)},
              {"kv_dtype", engine::kv_dtype_name(run.engine.kv_dtype, run.engine.dtype)},
              {"graphs", !gpu ? "n/a (cpu)" : run.engine.cuda_graphs ? "on" : "off (eager)"},
              {"copy", gpu ? copy : "n/a (cpu)"},
              {"steps", std::to_string(o.steps) + " timed after " + std::to_string(o.warmup)},
              {"kv", o.prefill ? "prefilled random prompts" : "random values, no prefill"}};
  if (dist != nullptr) {
    bi.extra.push_back({"parallel", "tp " + std::to_string(dist->parallel.tp_size) + " x pp " +
                                        std::to_string(dist->parallel.pp_size) +
                                        " (mpirun; eager launches)"});
  }
  bench::Table table(bi, columns());
  table.print_header(
      {"ms / p90_ms: per-step latency (CUDA events around each decode step, host planning",
       "included), median and p90. attn_ms: the attention launches of one more (eager) step,",
       "by layer role. GB: weights once + KV rows read per step. floor_ms = GB / copy.",
       "%floor = floor_ms / ms. #wrong: sampled ids outside the vocabulary."});
  for (const std::string& preset : o.presets) {
    TIDAL_RETURN_IF_ERROR(bench_preset(o, preset, contexts, batches, variants, run, &table));
  }
  TIDAL_RETURN_IF_ERROR(table.write_files(o.json_path, o.csv_path));
  if (table.failed_rows() > 0) return internal_error("rows with #wrong > 0");
  return ok_status();
}

}  // namespace tidal::launch
