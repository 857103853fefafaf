// SPDX-License-Identifier: Apache-2.0
// decode_bench: the engine end to end. Builds an engine (random weights for a preset or the
// small default shape, or a checkpoint), prefills --context random tokens, checks that a decode
// step matches a prefill of the same tokens, then times --steps batch-1 decode steps.
// On the CPU reference path (backend=cpu-ref) the numbers describe the oracle (over the
// machine's cores), not the product.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "benchmarks/common/stats.h"
#include "benchmarks/common/table.h"
#include "benchmarks/common/timer.h"
#include "model/config.h"
#include "model/weights.h"
#include "runtime/engine/engine.h"
#include "runtime/thread_pool.h"

namespace tidal::bench {
namespace {

struct Options {
  std::string model_dir;     // a checkpoint; excludes the shape flags
  std::string preset;        // Default (empty): the small shape below
  model::ModelConfig shape;  // overrides; 0 keeps the preset's value
  int64_t context = 128;     // prompt tokens prefilled before timing
  int64_t steps = 16;        // timed decode steps
  int64_t warmup = 2;        // untimed decode steps after the prefill
  uint64_t seed = 1;         // weights and prompt
  engine::EngineConfig engine;
  std::string json_path, csv_path;
};

Status resolve_config(const Options& o, model::ModelConfig* out) {
  // model::tiny_smoke_config(): the CPU reference prefills 128 tokens in about a second on two
  // cores.
  model::ModelConfig c = model::tiny_smoke_config();
  if (!o.preset.empty()) TIDAL_RETURN_IF_ERROR(model::model_config_preset(o.preset, &c));
  const model::ModelConfig& s = o.shape;
  if (s.num_layers > 0) c.num_layers = s.num_layers;
  if (s.vocab > 0) c.vocab = s.vocab;
  if (s.inter > 0) c.inter = s.inter;
  if (s.num_heads > 0) c.num_heads = s.num_heads;
  if (s.num_kv_heads > 0) c.num_kv_heads = s.num_kv_heads;
  if (s.hidden > 0) c.hidden = s.hidden;
  if (s.head_dim > 0) {
    c.head_dim = s.head_dim;
  } else if (s.hidden > 0 || s.num_heads > 0) {
    c.head_dim = c.hidden / c.num_heads;  // as config.json does when head_dim is absent
  }
  if (s.num_layers + s.vocab + s.inter + s.num_heads + s.num_kv_heads + s.hidden + s.head_dim > 0) {
    c.name += "*";  // marks an overridden shape in the table
  }
  // Random weights: special tokens only need to lie inside a shrunken vocabulary.
  if (c.bos_token_id >= c.vocab) c.bos_token_id = -1;
  c.eos_token_ids.erase(std::remove_if(c.eos_token_ids.begin(), c.eos_token_ids.end(),
                                       [&](int32_t t) { return t >= c.vocab; }),
                        c.eos_token_ids.end());
  TIDAL_RETURN_IF_ERROR(c.validate());
  *out = c;
  return ok_status();
}

// f32 bytes one decode step must read: every layer's weights, the final norm, the LM head and
// one embedding row (the floor of DESIGN.md §7 counts each once).
double weight_bytes_per_step(const model::ModelConfig& c) {
  const double h = double(c.hidden);
  const double layer =
      2 * h + double(c.q_dim()) * h * 2 + double(c.kv_dim()) * h * 2 + 3.0 * double(c.inter) * h;
  return sizeof(float) * (double(c.num_layers) * layer + h + double(c.vocab) * h + h);
}

std::string mb(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", double(bytes) / 1e6);
  return buf;
}

// The last path component of a checkpoint directory, so the model column stays narrow.
std::string short_name(std::string name) {
  while (name.size() > 1 && name.back() == '/') name.pop_back();
  const size_t slash = name.find_last_of('/');
  return slash == std::string::npos ? name : name.substr(slash + 1);
}

int32_t argmax(const std::vector<float>& v) {
  return int32_t(std::max_element(v.begin(), v.end()) - v.begin());
}

// Decoding token t after a prefill of `prefix` must give the logits of prefilling prefix + t
// (paged decode vs chunked prefill). Returns the logits outside tolerance.
Status check_decode(engine::Engine* e, const std::vector<int32_t>& prefix, int32_t t,
                    int64_t* wrong) {
  const int64_t vocab = e->model_config().vocab;
  std::vector<float> scratch(static_cast<size_t>(vocab)), decoded(static_cast<size_t>(vocab)),
      prefilled(static_cast<size_t>(vocab));
  engine::SeqId a = 0, b = 0;
  TIDAL_RETURN_IF_ERROR(e->add_sequence(prefix, &a));
  TIDAL_RETURN_IF_ERROR(e->prefill(a, make_view(scratch.data(), DType::kF32, {vocab})));
  TIDAL_RETURN_IF_ERROR(e->decode({a}, {t}, make_view(decoded.data(), DType::kF32, {1, vocab})));
  e->release(a);
  std::vector<int32_t> whole = prefix;
  whole.push_back(t);
  TIDAL_RETURN_IF_ERROR(e->add_sequence(whole, &b));
  TIDAL_RETURN_IF_ERROR(e->prefill(b, make_view(prefilled.data(), DType::kF32, {vocab})));
  e->release(b);
  for (size_t i = 0; i < decoded.size(); ++i) {
    const double want = prefilled[i], got = decoded[i];
    *wrong += !(std::isfinite(got) && std::fabs(got - want) <= 1e-4 + 1e-4 * std::fabs(want));
  }
  return ok_status();
}

std::vector<Column> columns() {
  return {{"model", 16, false, 0},     {"layers", 6, true, 0}, {"hidden", 6, true, 0},
          {"heads", 6, false, 0},      {"ctx", 7, true, 0},    {"steps", 5, true, 0},
          {"prefill_ms", 10, true, 1}, {"med_ms", 9, true, 2}, {"min_ms", 9, true, 2},
          {"p90_ms", 9, true, 2},      {"tok/s", 8, true, 2},  {"MB/step", 9, true, 1},
          {"GB/s", 7, true, 3},        {"#wrong", 6, true, 0}};
}

Status run(const Options& o, int64_t* failed) {
  // Room for the prompt, the warm-up and timed steps, and the check's prefix + 1.
  const int64_t check_len = std::min<int64_t>(o.context, 16);
  engine::EngineConfig ec = o.engine;
  ec.max_batch = 1;
  ec.max_context = std::max(o.context + o.warmup + o.steps, check_len + 1);
  std::unique_ptr<engine::Engine> e;
  if (!o.model_dir.empty()) {
    TIDAL_RETURN_IF_ERROR(engine::Engine::load(o.model_dir, ec, &e));
  } else {
    model::ModelConfig c;
    TIDAL_RETURN_IF_ERROR(resolve_config(o, &c));
    model::LlamaWeights w;
    TIDAL_RETURN_IF_ERROR(model::init_random_llama_weights(c, o.seed, &w));
    TIDAL_RETURN_IF_ERROR(engine::Engine::create(c, std::move(w), ec, &e));
  }
  const model::ModelConfig& c = e->model_config();

  std::mt19937 rng(uint32_t(o.seed));
  std::uniform_int_distribution<int32_t> id(0, int32_t(c.vocab - 1));
  std::vector<int32_t> prompt(static_cast<size_t>(o.context));
  for (int32_t& t : prompt) t = id(rng);
  int64_t wrong = 0;
  TIDAL_RETURN_IF_ERROR(check_decode(
      e.get(), std::vector<int32_t>(prompt.begin(), prompt.begin() + check_len), id(rng), &wrong));

  std::vector<float> logits(static_cast<size_t>(c.vocab));
  engine::SeqId seq = 0;
  HostTimer timer;
  timer.start();
  TIDAL_RETURN_IF_ERROR(e->add_sequence(prompt, &seq));
  TIDAL_RETURN_IF_ERROR(e->prefill(seq, make_view(logits.data(), DType::kF32, {c.vocab})));
  const double prefill_ms = timer.stop_us() / 1e3;

  const TensorView out = make_view(logits.data(), DType::kF32, {1, c.vocab});
  std::vector<double> samples;
  for (int64_t step = 0; step < o.warmup + o.steps; ++step) {
    const int32_t next = argmax(logits);  // greedy, outside the timed region
    timer.start();
    TIDAL_RETURN_IF_ERROR(e->decode({seq}, {next}, out));
    const double us = timer.stop_us();
    if (step >= o.warmup) samples.push_back(us);
    for (float v : logits) wrong += !std::isfinite(v);
  }
  const SampleStats s = summarize(samples);
  // Timed step i attends to context + warmup + i + 1 tokens; use the mean over the steps.
  const double kv_tokens = double(o.context + o.warmup) + double(o.steps + 1) / 2.0;
  const double bytes =
      weight_bytes_per_step(c) + double(e->memory_plan().kv_bytes_per_token) * kv_tokens;

  BenchInfo info = collect_bench_info("decode_bench");
  info.extra = {{"backend", "cpu-ref"},
                {"threads", std::to_string(cpu_threads())},
                {"seed", std::to_string(o.seed)},
                {"warmup", std::to_string(o.warmup)},
                {"page_size", std::to_string(ec.page_size)},
                {"prefill_chunk", std::to_string(ec.prefill_chunk)},
                {"weights_MB", mb(e->memory_plan().weight_bytes)}};
  if (!o.model_dir.empty()) info.extra.push_back({"model_dir", o.model_dir});
  Table table(info, columns());
  table.print_header(
      {"CPU reference path: the ref:: oracles' arithmetic in f32 (independent outputs split over",
       "the machine's cores), not the product's speed.",
       "MB/step: f32 weights one step reads (layers, final norm, LM head, one embedding row) +",
       "K/V of the attended context (mean over the timed steps). GB/s = MB/step / med_ms.",
       "#wrong: logits of decode-after-prefill off a prefill of the same tokens, + non-finite."});
  const std::string heads = std::to_string(c.num_heads) + "/" + std::to_string(c.num_kv_heads);
  table.add_row({short_name(c.name), c.num_layers, c.hidden, heads, o.context, int64_t(s.n),
                 prefill_ms, s.median / 1e3, s.min / 1e3, s.p90 / 1e3, 1e6 / s.median, bytes / 1e6,
                 bytes / (s.median * 1e-6) / 1e9, wrong});
  TIDAL_RETURN_IF_ERROR(table.write_files(o.json_path, o.csv_path));
  *failed = table.failed_rows();
  return ok_status();
}

}  // namespace
}  // namespace tidal::bench

int main(int argc, char** argv) {
  using namespace tidal::bench;
  Options o;
  CLI::App app{"decode_bench: prefill, check, then time batch-1 decode steps (CPU reference)"};
  auto* model = app.add_option("--model", o.model_dir, "Hugging Face checkpoint directory");
  auto* preset = app.add_option("--preset", o.preset,
                                "llama2-7b, llama3-8b, llama3.1-8b or llama-64l (random weights); "
                                "default: a small Llama-3-shaped model (4 layers, hidden 256)");
  model->excludes(preset);
  tidal::model::ModelConfig& s = o.shape;
  for (auto* shape_flag :
       {app.add_option("--layers", s.num_layers, "override: number of layers"),
        app.add_option("--hidden", s.hidden, "override: model width"),
        app.add_option("--inter", s.inter, "override: FFN width"),
        app.add_option("--heads", s.num_heads, "override: query heads"),
        app.add_option("--kv-heads", s.num_kv_heads, "override: key/value heads"),
        app.add_option("--head-dim", s.head_dim, "override; default: hidden / heads"),
        app.add_option("--vocab", s.vocab, "override: vocabulary size")}) {
    model->excludes(shape_flag);
  }
  app.add_option("--context", o.context, "prompt tokens prefilled before timing")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--steps", o.steps, "timed decode steps")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", o.warmup, "untimed decode steps first")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", o.seed, "weights and prompt seed")->capture_default_str();
  app.add_option("--page-size", o.engine.page_size, "KV page size, tokens")->capture_default_str();
  app.add_option("--prefill-chunk", o.engine.prefill_chunk, "prompt tokens per prefill step")
      ->capture_default_str();
  app.add_option("--json", o.json_path, "also write the table as JSON to this file");
  app.add_option("--csv", o.csv_path, "also write the table as CSV to this file");
  CLI11_PARSE(app, argc, argv);

  int64_t failed = 0;
  const tidal::Status st = run(o, &failed);
  if (!st.ok()) {
    std::fprintf(stderr, "decode_bench: %s\n", st.message().c_str());
    return 1;
  }
  if (failed > 0) {
    std::fprintf(stderr, "decode_bench: FAILED: the row has #wrong > 0\n");
    return 1;
  }
  return 0;
}
