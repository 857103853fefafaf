// SPDX-License-Identifier: Apache-2.0
// `tidal ppl`: streaming perplexity (reference/TIDALDECODE.md §4.4, the paper's PG-19 protocol):
// BOS, then every token of a held-out text fed as a decode step, so sparse attention applies as
// soon as the context passes the budget; one sequence per policy, batched. Prints a table (the
// whole stream, its second half, against full), keeps a JSON of every policy's per-token losses
// (--json; --resume continues one), and draws perplexity against position (--png-dir).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "benchmarks/common/table.h"
#include "launch/accuracy_run.h"
#include "launch/plot.h"
#include "launch/policy_file.h"
#include "launch/progress.h"
#include "runtime/file.h"

namespace tidal::launch {
namespace {

using json = nlohmann::json;

std::vector<bench::Column> columns() {
  return {{"policy", 6, false, 0}, {"granularity", 14, false, 0}, {"layers", 16, false, 0},
          {"K", 5, true, 0},       {"corr", 4, true, 0},         {"ppl", 9, true, 3},
          {"ppl_2nd_half", 12, true, 3}, {"ppl/full", 8, true, 4}, {"rows/full", 9, true, 3},
          {"#wrong", 6, true, 0}};
}

}  // namespace

std::vector<int32_t> perplexity_stream(int32_t bos, const std::vector<int32_t>& text,
                                       int64_t offset, int64_t tokens) {
  TIDAL_CHECK(offset >= 0 && tokens >= 0 && offset <= int64_t(text.size()) &&
                  tokens <= int64_t(text.size()) - offset,
              "perplexity_stream: the text has too few tokens");
  std::vector<int32_t> stream = {bos};
  stream.insert(stream.end(), text.begin() + offset, text.begin() + offset + tokens);
  return stream;
}

uint64_t token_checksum(const std::vector<int32_t>& ids) {
  uint64_t h = 1469598103934665603ull;
  for (int32_t id : ids) h = (h ^ uint64_t(uint32_t(id))) * 1099511628211ull;
  return h;
}

Status run_ppl(const PplOptions& o, const AccuracyDefaults& defaults) {
  if (o.window < 0) {
    return invalid_argument("--window must be >= 0 (0: tokens / 32, at least 16), got " +
                            std::to_string(o.window));
  }
  std::string dir;
  TIDAL_RETURN_IF_ERROR(resolve_harness_model(o.common, defaults, &dir));
  if (o.tokens < 2) return invalid_argument("--tokens must be >= 2");
  // A longer window leaves every curve without a point (the pictures empty axes).
  if (o.window > o.tokens) {
    return invalid_argument("--window " + std::to_string(o.window) + " is longer than the " +
                            std::to_string(o.tokens) + " tokens scored (--tokens)");
  }
  if (o.offset < 0) return invalid_argument("--offset must be >= 0");
  model::ModelConfig cfg;
  TIDAL_RETURN_IF_ERROR(model::load_model_config(dir, &cfg));
  std::vector<Variant> variants;
  TIDAL_RETURN_IF_ERROR(build_variants(o.variants, cfg, dir, 16, &variants));
  std::unique_ptr<model::Tokenizer> tok;
  TIDAL_RETURN_IF_ERROR(model::Tokenizer::load_from_dir(dir, &tok));
  const std::string path = harness_text(defaults, o.text);
  Haystack text;
  TIDAL_RETURN_IF_ERROR(load_haystack(path, *tok, &text).with_context("--text"));
  // Compared without offset + tokens, which wraps negative near INT64_MAX.
  const int64_t have = int64_t(text.tokens.size());
  if (o.offset > have || o.tokens > have - o.offset) {
    return out_of_range("--text " + path + " has " + std::to_string(have) + " tokens; --offset " +
                        std::to_string(o.offset) + " and --tokens " + std::to_string(o.tokens) +
                        " need " + std::to_string(uint64_t(o.offset) + uint64_t(o.tokens)));
  }
  const std::vector<int32_t> tokens =
      perplexity_stream(cfg.bos_token_id, text.tokens, o.offset, o.tokens);

  const json settings = {{"model", dir}, {"text", path}, {"tokens", o.tokens},
                         {"offset", o.offset}, {"checksum", token_checksum(tokens)}};
  std::map<std::string, json> done;  // by variant label
  if (!o.common.resume_path.empty()) {
    json prior;
    TIDAL_RETURN_IF_ERROR(read_resume_json(o.common.resume_path, "ppl",
                                           {{"variant", JsonType::kString},
                                            {"nll", JsonType::kNumbers},
                                            {"kv_rows", JsonType::kNumber},
                                            {"full_kv_rows", JsonType::kNumber}},
                                           &prior));
    // The checksum sees the tokens, not the model that scored them.
    TIDAL_RETURN_IF_ERROR(
        check_resume_settings(o.common.resume_path, prior["settings"], settings, {"model"}, {}));
    if (prior["settings"].value("checksum", json()) != json(token_checksum(tokens))) {
      return invalid_argument("--resume " + o.common.resume_path +
                              ": it scored other tokens (another --text, --offset, --tokens or "
                              "tokenizer)");
    }
    for (const json& r : prior["results"]) done[r["variant"].get<std::string>()] = r;
  }
  const std::string json_path = o.common.json_path.empty() ? o.common.resume_path
                                                           : o.common.json_path;
  json out = {{"command", "ppl"}, {"settings", settings}, {"complete", false}};
  const bench::BenchInfo info = bench::collect_bench_info("tidal ppl");
  out["machine"] = {{"device", harness_device_name(o.common, info.device)},
                    {"kv_dtype", o.common.device.kv_dtype},
                    {"commit", info.commit}};

  std::vector<const Variant*> todo;
  int64_t max_budget = 2;
  for (const Variant& v : variants) {
    max_budget = std::max(max_budget, v.budget);
    if (!done.count(v.label)) todo.push_back(&v);
  }
  // The outputs are made before any work, once the engine's settings pass: an unwritable --json
  // found after the streams would lose them all (the table is printed after the last write).
  engine::EngineConfig config;  // the engine's, loaded below
  if (!todo.empty()) {
    TIDAL_RETURN_IF_ERROR(harness_engine_config(o.common, dir, o.tokens, max_budget, &config));
  }
  TIDAL_RETURN_IF_ERROR(make_png_dir(o.common.png_dir));
  out["results"] = json::array();
  for (const auto& [label, r] : done) out["results"].push_back(r);
  if (!json_path.empty()) TIDAL_RETURN_IF_ERROR(write_file_atomic(json_path, out.dump() + "\n"));

  if (!todo.empty()) {
    std::unique_ptr<engine::Engine> engine;
    TIDAL_RETURN_IF_ERROR(engine::Engine::load(dir, config, &engine));
    Progress progress("ppl", "decode steps", /*delay_seconds=*/2.0);
    progress.show_elapsed(true);
    const int64_t steps = o.tokens - 1;  // decode steps a stream takes (BOS is prefilled)
    progress.start(steps * int64_t(todo.size()));
    const size_t batch = size_t(o.common.max_batch);
    int64_t before = 0;
    for (size_t b = 0; b < todo.size(); b += batch) {
      const std::vector<const Variant*> part(todo.begin() + long(b),
                                             todo.begin() + long(std::min(todo.size(), b + batch)));
      std::vector<PplRun> runs;
      TIDAL_RETURN_IF_ERROR(run_ppl_streams(*engine, tokens, part, &runs, [&](int64_t d) {
        progress.update(before + d);
      }));
      before += steps * int64_t(part.size());
      for (size_t i = 0; i < part.size(); ++i) {
        std::vector<double> nll;
        for (double x : runs[i].nll) nll.push_back(std::round(x * 1e6) / 1e6);
        done[part[i]->label] = {{"variant", part[i]->label}, {"ppl", runs[i].perplexity()},
                                {"kv_rows", runs[i].kv_rows},
                                {"full_kv_rows", runs[i].full_kv_rows}, {"nll", nll}};
      }
      out["results"] = json::array();
      for (const auto& [label, r] : done) out["results"].push_back(r);
      if (!json_path.empty()) TIDAL_RETURN_IF_ERROR(write_file_atomic(json_path, out.dump() + "\n"));
    }
    progress.finish();
  }

  bench::BenchInfo table_info = info;
  table_info.extra = {{"model", std::filesystem::path(dir).filename().string()},
                      {"tokens", std::to_string(o.tokens)},
                      {"offset", std::to_string(o.offset)}};
  bench::Table table(table_info, columns());
  table.print_header({"text=" + path,
                      "streaming: BOS, then every token a decode step; ppl = exp(mean NLL)",
                      "ppl_2nd_half: positions " + std::to_string(o.tokens / 2) + " on; rows/full: "
                      "KV rows read over full's; #wrong: a budget covering the stream off full's "
                      "ppl by > 0.1%"});
  auto nll_of = [](const json& r) { return r["nll"].get<std::vector<double>>(); };
  const auto full = done.find("full");
  PplRun full_run;
  if (full != done.end()) full_run.nll = nll_of(full->second);
  const double full_ppl = full != done.end() ? full_run.perplexity() : NAN;
  const size_t window =
      size_t(o.window > 0 ? o.window
                          : std::min(o.tokens, std::max<int64_t>(16, o.tokens / 32)));
  std::map<int64_t, LineChart> charts;  // by budget (0: full alone); full joins every chart
  std::vector<Series> full_series;
  for (const Variant& v : variants) {
    const json& r = done.at(v.label);
    PplRun run;
    run.nll = nll_of(r);
    const double ppl = run.perplexity();
    const double rows = r.value("kv_rows", 0.0), full_rows = r.value("full_kv_rows", 0.0);
    const bool control = v.budget >= o.tokens && std::isfinite(full_ppl);
    const int64_t wrong = control && std::fabs(ppl / full_ppl - 1) > 1e-3 ? 1 : 0;
    table.add_row({v.policy, v.granularity, v.layers,
                   v.budget > 0 ? bench::Cell(v.budget) : bench::Cell(NAN),
                   v.correction > 0 ? bench::Cell(v.correction) : bench::Cell(NAN), ppl,
                   run.perplexity(run.nll.size() / 2, run.nll.size()), ppl / full_ppl,
                   full_rows > 0 ? rows / full_rows : NAN, wrong});
    Series s;
    s.name = v.label;
    for (size_t b = 0; b + window <= run.nll.size(); b += window) {
      s.x.push_back(double(b + window));
      s.y.push_back(run.perplexity(b, b + window));
    }
    LineChart& chart = charts[v.budget];
    chart.title = "PERPLEXITY, WINDOWS OF " + std::to_string(window) + " TOKENS" +
                  (v.budget > 0 ? ", K=" + std::to_string(v.budget) : "");
    chart.x_title = "POSITION";
    chart.y_title = "PPL";
    chart.log_y = true;
    if (v.budget == 0) full_series.push_back(s);
    chart.series.push_back(std::move(s));
  }
  out["results"] = json::array();
  for (const auto& [label, r] : done) out["results"].push_back(r);
  out["complete"] = true;
  if (!json_path.empty()) TIDAL_RETURN_IF_ERROR(write_file_atomic(json_path, out.dump() + "\n"));
  if (!o.common.png_dir.empty()) {
    for (auto& [budget, chart] : charts) {
      if (budget == 0 && charts.size() > 1) continue;  // full is drawn in every budget's chart
      if (budget > 0) chart.series.insert(chart.series.begin(), full_series.begin(), full_series.end());
      const std::string name = budget > 0 ? "ppl_K" + std::to_string(budget) + ".png" : "ppl.png";
      TIDAL_RETURN_IF_ERROR(write_png(o.common.png_dir + "/" + name, render_line_chart(chart)));
    }
  }
  return table.failed_rows() > 0 ? internal_error("rows with #wrong > 0") : ok_status();
}

}  // namespace tidal::launch
