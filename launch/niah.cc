// SPDX-License-Identifier: Apache-2.0
// `tidal niah`: needle-in-a-haystack retrieval over context lengths x needle depths, several
// seeded needles per cell, for every policy of the sweep (launch/needle.h builds the cases;
// launch/accuracy_run.h runs them, one prefill per case forked for every policy). Prints a table
// per length as it completes, keeps a JSON of every result up to date (--json; --resume continues
// one), and draws a heatmap per policy (--png-dir).
#include <algorithm>
#include <cmath>
#include <cstdio>
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

json settings_json(const NiahOptions& o, const std::string& model, const std::string& haystack) {
  return {{"model", model},
          {"haystack", haystack},
          {"seed", o.common.seed},
          {"gen_tokens", o.gen_tokens},
          {"sparse_question", o.sparse_question},
          {"protocol", o.sparse_question ? "question decoded under the policy (Quest's)"
                                         : "question prefilled densely (TidalDecode's, §4.3)"}};
}

// The earlier run's results by case key, after checking that it ran the same cases.
Status load_resume(const std::string& path, const json& settings, std::map<std::string, json>* out) {
  json prior;
  TIDAL_RETURN_IF_ERROR(read_resume_json(
      path, "niah",
      {{"key", JsonType::kString}, {"number", JsonType::kString}, {"retrieved", JsonType::kBool},
       {"tokens", JsonType::kArray}, {"kv_rows", JsonType::kNumber},
       {"full_kv_rows", JsonType::kNumber}},
      &prior));
  // The cases' needles are drawn from the seed alone: another haystack or model (whose answers
  // these are) is seen only by its path.
  TIDAL_RETURN_IF_ERROR(check_resume_settings(path, prior["settings"], settings,
                                              {"model", "haystack"},
                                              {"seed", "gen_tokens", "sparse_question"}));
  for (const json& r : prior["results"]) (*out)[r["key"].get<std::string>()] = r;
  return ok_status();
}

Status write_json(const std::string& path, const json& j) {
  if (path.empty()) return ok_status();
  return write_file_atomic(path, j.dump(1) + "\n");
}

std::vector<bench::Column> columns(const std::vector<int64_t>& depths) {
  std::vector<bench::Column> c = {{"policy", 6, false, 0}, {"granularity", 14, false, 0},
                                  {"layers", 16, false, 0}, {"K", 5, true, 0},
                                  {"corr", 4, true, 0},     {"length", 6, true, 0}};
  for (int64_t d : depths) c.push_back({"d" + std::to_string(d), 4, true, 0});
  c.push_back({"all%", 6, true, 1});
  c.push_back({"rows/full", 9, true, 3});
  c.push_back({"#wrong", 6, true, 0});
  return c;
}

}  // namespace

Status run_niah(const NiahOptions& o, const AccuracyDefaults& defaults) {
  // Checked first: 200 would fail only after the whole sweep, -5 would set no floor.
  if (o.min_accuracy_given && !(o.min_accuracy >= 0 && o.min_accuracy <= 100)) {
    char got[32];
    std::snprintf(got, sizeof(got), "%g", o.min_accuracy);
    return invalid_argument(std::string("--min-accuracy must be a percent in [0, 100], got ") +
                            got);
  }
  std::string dir;
  TIDAL_RETURN_IF_ERROR(resolve_harness_model(o.common, defaults, &dir));
  std::vector<int64_t> lengths, depths;
  TIDAL_RETURN_IF_ERROR(parse_length_list(o.lengths, "--lengths", &lengths));
  TIDAL_RETURN_IF_ERROR(parse_depth_list(o.depths, &depths));
  TIDAL_RETURN_IF_ERROR(check_needles(o.needles));
  TIDAL_RETURN_IF_ERROR(check_needle_batch(o.common.max_batch));
  if (o.gen_tokens < 1) return invalid_argument("--gen-tokens must be >= 1");
  model::ModelConfig cfg;
  TIDAL_RETURN_IF_ERROR(model::load_model_config(dir, &cfg));
  std::vector<Variant> variants;
  TIDAL_RETURN_IF_ERROR(build_variants(o.variants, cfg, dir, 16, &variants));
  std::unique_ptr<model::Tokenizer> tok;
  TIDAL_RETURN_IF_ERROR(model::Tokenizer::load_from_dir(dir, &tok));
  const std::string haystack_path = harness_text(defaults, o.haystack);
  Haystack hay;
  TIDAL_RETURN_IF_ERROR(load_haystack(haystack_path, *tok, &hay).with_context("--haystack"));
  std::unique_ptr<NeedleMaker> maker;
  TIDAL_RETURN_IF_ERROR(NeedleMaker::create(*tok, cfg.bos_token_id, std::move(hay), &maker));

  // Every case, made before anything runs (a haystack too short fails now).
  std::vector<NeedleCase> cases;
  TIDAL_RETURN_IF_ERROR(
      maker->make_grid(lengths, depths, o.needles, o.common.seed, o.gen_tokens, &cases)
          .with_context("niah"));
  // A correction pass helps only the decode steps after it, and a case takes few: an interval
  // that no case's steps exceed runs no pass an answer reads (its rows repeat uncorrected ones).
  int64_t steps = 0;  // the most decode steps a case takes
  for (const NeedleCase& c : cases) {
    const int64_t question = o.sparse_question ? int64_t(c.question.size()) : 0;
    steps = std::max(steps, question + o.gen_tokens - 1);
  }
  for (const Variant& v : variants) {
    if (v.correction < 1 || v.correction < steps) continue;
    const std::string gen = "--gen-tokens " + std::to_string(o.gen_tokens);
    return invalid_argument(
        "--correction-interval " + std::to_string(v.correction) +
        " never runs a pass that an answer reads: a case decodes " +
        (o.sparse_question ? "at most " : "") + std::to_string(steps) + " tokens (" +
        (o.sparse_question ? "its question, then " + gen + " less one"
                           : gen + ", the first from the prefill") +
        "): " +
        (steps > 1 ? "at most " + std::to_string(steps - 1) + ", or 0 (off)" : "only 0 (off)"));
  }
  const json settings = settings_json(o, dir, haystack_path);
  std::map<std::string, json> done;
  if (!o.common.resume_path.empty()) {
    TIDAL_RETURN_IF_ERROR(load_resume(o.common.resume_path, settings, &done));
  }
  json out = {{"command", "niah"}, {"settings", settings}, {"complete", false}};
  const bench::BenchInfo info = bench::collect_bench_info("tidal niah");
  out["machine"] = {{"device", harness_device_name(o.common, info.device)},
                    {"kv_dtype", o.common.device.kv_dtype},
                    {"commit", info.commit}};
  for (const Variant& v : variants) {
    out["variants"].push_back({{"label", v.label}, {"policy", v.policy},
                               {"granularity", v.granularity}, {"layers", v.layers},
                               {"budget", v.budget}, {"correction_interval", v.correction}});
  }
  for (const NeedleCase& c : cases) {
    out["cases"].push_back({{"length", c.spec.length}, {"depth", c.spec.depth_percent},
                            {"index", c.spec.index}, {"city", c.city}, {"number", c.number},
                            {"needle_position", c.needle_begin},
                            {"haystack_offset", c.haystack_offset},
                            {"prompt_tokens", c.context.size() + c.question.size()}});
    for (const Variant& v : variants) {
      auto it = done.find(needle_case_key(v.label, c.spec));
      if (it != done.end() && it->second.value("number", "") != c.number) {
        return invalid_argument("--resume: its case " + it->first + " has another needle (" +
                                it->second.value("number", "") + ", now " + c.number +
                                "): its cases were made another way");
      }
    }
  }
  const std::string json_path = o.common.json_path.empty() ? o.common.resume_path
                                                           : o.common.json_path;
  int64_t total = 0, finished = 0;
  for (const NeedleCase& c : cases) {
    for (const Variant& v : variants) total += done.count(needle_case_key(v.label, c.spec)) ? 0 : 1;
  }
  int64_t max_budget = 2;
  for (const Variant& v : variants) max_budget = std::max(max_budget, v.budget);
  const int64_t max_length = *std::max_element(lengths.begin(), lengths.end());
  // The outputs are made before any work, once the engine's settings pass: an unwritable --json
  // or --png-dir is found now, not after the first case (or the whole sweep).
  engine::EngineConfig config;  // the engine's, loaded below
  if (total > 0) {
    TIDAL_RETURN_IF_ERROR(harness_engine_config(o.common, dir, max_length, max_budget, &config));
  }
  TIDAL_RETURN_IF_ERROR(make_png_dir(o.common.png_dir));
  out["results"] = json::array();
  for (const auto& [key, r] : done) out["results"].push_back(r);
  TIDAL_RETURN_IF_ERROR(write_json(json_path, out));

  bench::BenchInfo table_info = info;
  table_info.extra = {{"model", std::filesystem::path(dir).filename().string()},
                      {"device", o.common.device.device},
                      {"kv_dtype", o.common.device.kv_dtype},
                      {"needles", std::to_string(o.needles)},
                      {"seed", std::to_string(o.common.seed)},
                      {"gen_tokens", std::to_string(o.gen_tokens)},
                      {"question", o.sparse_question ? "sparse" : "dense"}};
  bench::Table table(table_info, columns(depths));
  std::vector<std::string> notes = {
      "haystack=" + haystack_path,
      "d<N>: needles retrieved at depth N% (of " + std::to_string(o.needles) +
          "); all%: over every depth; rows/full: KV rows the decode steps read over full's",
      "#wrong: answers differing from full's where the policy's budget covers the context"};
  for (const NeedleCase& c : cases) {
    notes.push_back("case " + std::to_string(c.spec.length) + "/" +
                    std::to_string(c.spec.depth_percent) + "%/" + std::to_string(c.spec.index) +
                    ": " + c.city + " " + c.number + " at token " +
                    std::to_string(c.needle_begin) + " (haystack token " +
                    std::to_string(c.haystack_offset) + ")");
  }
  table.print_header(notes);

  std::unique_ptr<engine::Engine> engine;
  if (total > 0) TIDAL_RETURN_IF_ERROR(engine::Engine::load(dir, config, &engine));
  Progress progress("niah", "runs", /*delay_seconds=*/2.0);
  progress.show_elapsed(true);
  std::string below;  // the first policy under --min-accuracy
  progress.start(total);
  size_t next_case = 0;
  for (int64_t length : lengths) {
    for (; next_case < cases.size() && cases[next_case].spec.length == length; ++next_case) {
      const NeedleCase& c = cases[next_case];
      std::vector<const Variant*> todo;
      for (const Variant& v : variants) {
        if (!done.count(needle_case_key(v.label, c.spec))) todo.push_back(&v);
      }
      if (todo.empty()) continue;
      std::vector<NeedleRun> runs;
      TIDAL_RETURN_IF_ERROR(run_needle_case(*engine, *tok, c, todo, o.sparse_question, &runs)
                                .with_context("case " + std::to_string(c.spec.length) + "/" +
                                              std::to_string(c.spec.depth_percent) + "%/" +
                                              std::to_string(c.spec.index)));
      for (size_t i = 0; i < todo.size(); ++i) {
        const std::string key = needle_case_key(todo[i]->label, c.spec);
        done[key] = {{"key", key},           {"variant", todo[i]->label},
                     {"length", c.spec.length}, {"depth", c.spec.depth_percent},
                     {"index", c.spec.index},   {"number", c.number},
                     {"retrieved", runs[i].retrieved}, {"output", runs[i].text},
                     {"tokens", runs[i].tokens},       {"kv_rows", runs[i].kv_rows},
                     {"full_kv_rows", runs[i].full_kv_rows}};
      }
      finished += int64_t(todo.size());
      progress.update(finished);
      out["results"] = json::array();
      for (const auto& [key, r] : done) out["results"].push_back(r);
      TIDAL_RETURN_IF_ERROR(write_json(json_path, out));
    }
    progress.finish();
    // The length's rows: one per policy.
    for (const Variant& v : variants) {
      std::vector<bench::Cell> row = {v.policy, v.granularity, v.layers,
                                      v.budget > 0 ? bench::Cell(v.budget) : bench::Cell(NAN),
                                      v.correction > 0 ? bench::Cell(v.correction) : bench::Cell(NAN),
                                      length};
      int64_t hits = 0, count = 0, wrong = 0;
      double rows = 0, full_rows = 0;
      for (int64_t d : depths) {
        int64_t cell = 0;
        for (int64_t i = 0; i < o.needles; ++i) {
          const NeedleSpec spec{length, d, i, o.common.seed, o.gen_tokens};
          const json& r = done.at(needle_case_key(v.label, spec));
          cell += r.value("retrieved", false);
          rows += r.value("kv_rows", 0.0);
          full_rows += r.value("full_kv_rows", 0.0);
          // A budget that covers the whole context must answer as full does.
          const auto full = done.find(needle_case_key("full", spec));
          if (v.budget >= length && full != done.end() &&
              full->second["tokens"] != r["tokens"]) {
            ++wrong;
          }
        }
        row.emplace_back(cell);
        hits += cell;
        count += o.needles;
      }
      const double accuracy = 100.0 * double(hits) / double(count);
      if (accuracy < o.min_accuracy && below.empty()) {
        below = v.label + " retrieved " + std::to_string(hits) + " of " + std::to_string(count) +
                " needles at " + std::to_string(length) + " tokens";
      }
      row.emplace_back(accuracy);
      row.emplace_back(full_rows > 0 ? rows / full_rows : NAN);
      row.emplace_back(wrong);
      table.add_row(row);
    }
  }
  out["complete"] = true;
  TIDAL_RETURN_IF_ERROR(write_json(json_path, out));
  if (!o.common.png_dir.empty()) {
    for (const Variant& v : variants) {
      Heatmap h;
      h.title = "NIAH " + v.label;
      h.x_title = "NEEDLE DEPTH %";
      h.y_title = "LENGTH";
      for (int64_t d : depths) h.x_labels.push_back(std::to_string(d));
      for (int64_t length : lengths) {
        h.y_labels.push_back(std::to_string(length));
        std::vector<double> cells;
        for (int64_t d : depths) {
          double hits = 0;
          for (int64_t i = 0; i < o.needles; ++i) {
            hits += done.at(needle_case_key(v.label, {length, d, i, o.common.seed, o.gen_tokens}))
                        .value("retrieved", false);
          }
          cells.push_back(hits / double(o.needles));
        }
        h.values.push_back(cells);
      }
      const std::string path = o.common.png_dir + "/" + variant_file_name("niah", v);
      TIDAL_RETURN_IF_ERROR(write_png(path, render_heatmap(h)));
    }
  }
  if (table.failed_rows() > 0) return internal_error("rows with #wrong > 0");
  if (!below.empty()) {
    char limit[32];
    std::snprintf(limit, sizeof(limit), "%g%%", o.min_accuracy);
    return internal_error(below + ", below --min-accuracy " + limit);
  }
  return ok_status();
}

}  // namespace tidal::launch
