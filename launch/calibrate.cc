// SPDX-License-Identifier: Apache-2.0
// `tidal calibrate`: chooses a model's TidalDecode selection layers (the first selection layer and
// the re-selection layers together) by measurement (DESIGN.md §4). Every candidate runs at one
// budget on seeded needle cases (one prefill per case, forked for every candidate) and on a
// streamed perplexity text; its cost is the KV rows its decode steps read, relative to full. The
// choice is the cheapest candidate that keeps full's accuracy (launch/accuracy.h
// choose_candidate), written beside the model as tidal_policy.json, which generate, bench, niah
// and ppl then take as the model's default. A layer probe on the same cases explains it: where
// the needle is read, and how far each layer's top-K list agrees with the others'.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>

#include "benchmarks/common/table.h"
#include "launch/accuracy_run.h"
#include "launch/policy_file.h"
#include "launch/progress.h"

namespace tidal::launch {
namespace {

using json = nlohmann::json;

std::string spec_key(const NeedleSpec& s) {
  return std::to_string(s.length) + "|" + std::to_string(s.depth_percent) + "|" +
         std::to_string(s.index);
}

// full, then every (S, R) candidate at budget K.
Status build_candidates(const CalibrateOptions& o, const model::ModelConfig& cfg,
                        std::vector<Variant>* out) {
  model::Granularity g;
  TIDAL_RETURN_IF_ERROR(model::parse_granularity(o.granularity, &g).with_context("--granularity"));
  if (o.max_reselect < 0 || o.max_reselect > 2) {
    return invalid_argument("--max-reselect must be 0, 1 or 2");
  }
  const int64_t layers = cfg.num_layers;
  std::vector<int64_t> firsts;
  if (o.first_layers.empty()) {
    for (int64_t s = 1; s + 1 < layers; ++s) firsts.push_back(s);
  } else {
    TIDAL_RETURN_IF_ERROR(parse_int_list(o.first_layers, "--first-layers", &firsts));
  }
  Variant full{"full", "full", "-", "-", 0, 0, model::AttentionPolicy()};
  out->push_back(full);
  auto add = [&](int64_t s, std::vector<int64_t> re) {
    Variant v;
    v.policy = "tidal";
    v.granularity = model::granularity_name(g);
    v.budget = o.budget;
    v.layers = layers_label(s, re);
    v.label = v.layers;
    v.attention.kind = model::AttentionKind::kTidal;
    v.attention.tidal.budget = o.budget;
    v.attention.tidal.granularity = g;
    v.attention.tidal.sparse_start = s;
    v.attention.tidal.reselect_layers = re;
    out->push_back(v);
  };
  for (int64_t s : firsts) {
    if (s < 0 || s >= layers) {
      return invalid_argument("--first-layers: layer " + std::to_string(s) + " is outside the " +
                              std::to_string(layers) + " layers");
    }
    add(s, {});
    for (int64_t r1 = s + 1; o.max_reselect >= 1 && r1 < layers; ++r1) {
      add(s, {r1});
      for (int64_t r2 = r1 + 1; o.max_reselect >= 2 && r2 < layers; ++r2) add(s, {r1, r2});
    }
  }
  // The depth-scaled rule is always measured, as the reference the choice is compared with.
  const std::vector<int64_t> def = model::default_reselect_layers(layers, 2);
  const std::string def_label = layers_label(2, def);
  if (std::none_of(out->begin(), out->end(), [&](const Variant& v) { return v.label == def_label; }))
    add(2, def);
  for (const Variant& v : *out) {
    const Status st = v.attention.validate(cfg, 16);
    if (!st.ok()) return invalid_argument(v.label + ": " + st.message());
  }
  return ok_status();
}

std::string pct(double v) {
  char b[16];
  std::snprintf(b, sizeof(b), "%5.1f", 100.0 * v);
  return b;
}

void print_probe(const LayerProbe& p) {
  std::printf("\n# Layer probe: every layer selecting (per query head, K=%lld), so the answer is "
              "full attention's; %lld answer steps over the needle cases.\n",
              static_cast<long long>(p.budget), static_cast<long long>(p.steps));
  std::printf("# mass_max: the largest attention mass one head put on the needle sentence in one "
              "step; mass_mean: averaged over heads and steps;\n# recall: share of the number's "
              "tokens in a head's top-K list; keep_next: share of the layer's list the next "
              "layer's list keeps.\n");
  std::printf("# layer  mass_max  mass_mean  recall%%  keep_next%%\n");
  for (int64_t l = 0; l < p.layers; ++l) {
    std::printf("  %5lld  %8.4f  %9.4f  %7s  %10s\n", static_cast<long long>(l),
                p.needle_mass_max[size_t(l)], p.needle_mass_mean(l),
                pct(p.number_recall(l)).c_str(),
                l + 1 < p.layers ? pct(p.overlap(l, l + 1)).c_str() : "-");
  }
  std::printf("\n# List overlap (%%): row a, column b = share of layer a's top-K list that layer "
              "b's list keeps (same head).\n#     ");
  for (int64_t b = 0; b < p.layers; ++b) std::printf(" %4lld", static_cast<long long>(b));
  std::printf("\n");
  for (int64_t a = 0; a < p.layers; ++a) {
    std::printf("  %3lld ", static_cast<long long>(a));
    for (int64_t b = 0; b < p.layers; ++b) std::printf(" %4.0f", 100.0 * p.overlap(a, b));
    std::printf("\n");
  }
}

json probe_json(const LayerProbe& p) {
  json j = {{"budget", p.budget}, {"steps", p.steps}, {"layers", json::array()}};
  for (int64_t l = 0; l < p.layers; ++l) {
    std::vector<double> row;
    for (int64_t b = 0; b < p.layers; ++b) row.push_back(p.overlap(l, b));
    j["layers"].push_back({{"layer", l},
                           {"needle_mass_max", p.needle_mass_max[size_t(l)]},
                           {"needle_mass_mean", p.needle_mass_mean(l)},
                           {"number_recall", p.number_recall(l)},
                           {"overlap", row}});
  }
  return j;
}

// The sums a probe holds, as JSON (resume keeps them per case).
json probe_sums(const LayerProbe& p) {
  return {{"layers", p.layers},           {"heads", p.heads},
          {"budget", p.budget},           {"steps", p.steps},
          {"mass_max", p.needle_mass_max}, {"mass_sum", p.needle_mass_sum},
          {"recall_sum", p.number_recall_sum}, {"overlap_sum", p.overlap_sum}};
}

// A --resume file's probe of one case (`where` names it; its fields' types are checked) against
// the model: its sums are read by layer and by pair of layers.
Status check_probe_sums(const json& j, const model::ModelConfig& cfg, const std::string& where) {
  if (j["layers"] != cfg.num_layers || j["heads"] != cfg.num_heads) {
    return invalid_argument(where + " holds the sums of " + j["layers"].dump() + " layers and " +
                            j["heads"].dump() + " heads, not this model's " +
                            std::to_string(cfg.num_layers) + " and " +
                            std::to_string(cfg.num_heads));
  }
  const double steps = j["steps"].get<double>();
  if (!(steps >= 0 && steps <= 1e15 && steps == std::floor(steps))) {
    return invalid_argument(where + ".steps is not a count of steps");
  }
  const size_t layers = size_t(cfg.num_layers);
  const struct {
    const char* name;
    size_t size;
    const char* what;
  } sums[] = {{"mass_max", layers, "one per layer"},
              {"mass_sum", layers, "one per layer"},
              {"recall_sum", layers, "one per layer"},
              {"overlap_sum", layers * layers, "one per pair of layers"}};
  for (const auto& s : sums) {
    if (j[s.name].size() != s.size) {
      return invalid_argument(where + "." + s.name + " holds " + std::to_string(j[s.name].size()) +
                              " values, not " + std::to_string(s.size) + " (" + s.what + ")");
    }
  }
  return ok_status();
}

LayerProbe probe_from(const json& j) {
  LayerProbe p;
  p.layers = j.value("layers", int64_t(0));
  p.heads = j.value("heads", int64_t(0));
  p.budget = j.value("budget", int64_t(0));
  p.steps = j.value("steps", int64_t(0));
  p.needle_mass_max = j["mass_max"].get<std::vector<double>>();
  p.needle_mass_sum = j["mass_sum"].get<std::vector<double>>();
  p.number_recall_sum = j["recall_sum"].get<std::vector<double>>();
  p.overlap_sum = j["overlap_sum"].get<std::vector<double>>();
  return p;
}

}  // namespace

bool matches_full(const CandidateScore& c, int64_t full_hits, double full_ppl,
                  int64_t miss_tolerance, double ppl_tolerance) {
  const bool needle_ok = full_hits - c.hits <= miss_tolerance;  // hits + tolerance may overflow
  const bool ppl_ok = !(std::isfinite(c.ppl) && std::isfinite(full_ppl)) ||
                      c.ppl <= full_ppl * (1.0 + ppl_tolerance);
  return needle_ok && ppl_ok;
}

size_t choose_candidate(const std::vector<CandidateScore>& s, int64_t full_hits, double full_ppl,
                        int64_t miss_tolerance, double ppl_tolerance, bool* matched) {
  TIDAL_CHECK(!s.empty(), "choose_candidate: no candidates");
  auto ppl = [](const CandidateScore& c) { return std::isfinite(c.ppl) ? c.ppl : 0.0; };
  size_t best = s.size();
  for (size_t i = 0; i < s.size(); ++i) {
    if (!matches_full(s[i], full_hits, full_ppl, miss_tolerance, ppl_tolerance)) continue;
    if (best == s.size()) {
      best = i;
      continue;
    }
    const auto key = [&](const CandidateScore& c) {
      return std::make_tuple(c.cost, -c.hits, ppl(c), c.reselect.size());
    };
    if (key(s[i]) < key(s[best])) best = i;
  }
  *matched = best < s.size();
  if (*matched) return best;
  best = 0;
  for (size_t i = 1; i < s.size(); ++i) {
    const auto key = [&](const CandidateScore& c) {
      return std::make_tuple(-c.hits, ppl(c), c.cost);
    };
    if (key(s[i]) < key(s[best])) best = i;
  }
  return best;
}

std::string calibration_summary(const CalibrateOptions& o, size_t cases, const CandidateScore& pick,
                                const CandidateScore& full, const std::string& def_label,
                                const CandidateScore& def, bool matched) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(3) << "calibrated at K=" << o.budget << " (" << o.granularity
    << ") on " << cases << " needle cases (" << o.lengths << " tokens)";
  if (o.ppl_tokens > 0) s << " + " << o.ppl_tokens << "-token ppl";
  s << ": needle " << pick.hits << "/" << cases << " (full " << full.hits << ", default "
    << def_label << " " << def.hits << "), ppl " << pick.ppl << " (full " << full.ppl
    << "), KV rows " << pick.cost << " of full";
  if (!matched) s << "; no candidate matched full: the most accurate was taken";
  return s.str();
}

Status run_calibrate(const CalibrateOptions& o, const AccuracyDefaults& defaults) {
  std::string dir;
  TIDAL_RETURN_IF_ERROR(resolve_harness_model(o.common, defaults, &dir));
  std::vector<int64_t> lengths, depths;
  TIDAL_RETURN_IF_ERROR(parse_length_list(o.lengths, "--lengths", &lengths));
  TIDAL_RETURN_IF_ERROR(parse_depth_list(o.depths, &depths));
  if (o.budget < 2) return invalid_argument("--budget must be >= 2");
  TIDAL_RETURN_IF_ERROR(check_needles(o.needles));
  TIDAL_RETURN_IF_ERROR(check_needle_batch(o.common.max_batch));
  if (o.gen_tokens < 1) return invalid_argument("--gen-tokens must be >= 1");
  // The stream is tidal ppl's: --ppl-tokens N scores what ppl --tokens N does, from 2 tokens.
  if (o.ppl_tokens < 0 || o.ppl_tokens == 1) {
    return invalid_argument(
        "--ppl-tokens must be 0 (no perplexity) or >= 2 (as tidal ppl's --tokens), got " +
        std::to_string(o.ppl_tokens));
  }
  if (o.dry_run && !o.out.empty()) {
    return invalid_argument("--out has no effect with --dry-run (no policy file is written)");
  }
  if (o.ppl_tokens == 0 && !o.ppl_flags_given.empty()) {
    return invalid_argument(o.ppl_flags_given[0] +
                            " has no effect with --ppl-tokens 0 (no perplexity is measured)");
  }
  // Below 0 (or NaN) no candidate can match full, and the choice would silently be the most
  // accurate one instead.
  if (o.miss_tolerance < 0) {
    return invalid_argument("--miss-tolerance must be >= 0, got " +
                            std::to_string(o.miss_tolerance));
  }
  if (!(std::isfinite(o.ppl_tolerance) && o.ppl_tolerance >= 0)) {
    char got[32];
    std::snprintf(got, sizeof(got), "%g", o.ppl_tolerance);
    return invalid_argument(std::string("--ppl-tolerance must be a finite number >= 0, got ") +
                            got);
  }
  model::ModelConfig cfg;
  TIDAL_RETURN_IF_ERROR(model::load_model_config(dir, &cfg));
  // The stream's ppl_tokens positions (BOS and every scored token but the last) size the engine
  // with the cases' lengths.
  if (o.ppl_tokens > cfg.max_position_embeddings) {
    return invalid_argument("--ppl-tokens " + std::to_string(o.ppl_tokens) +
                            " exceeds the model's context of " +
                            std::to_string(cfg.max_position_embeddings));
  }
  std::vector<Variant> cands;
  TIDAL_RETURN_IF_ERROR(build_candidates(o, cfg, &cands));
  std::unique_ptr<model::Tokenizer> tok;
  TIDAL_RETURN_IF_ERROR(model::Tokenizer::load_from_dir(dir, &tok));
  const std::string hay_path = harness_text(defaults, o.haystack);
  Haystack hay;
  TIDAL_RETURN_IF_ERROR(load_haystack(hay_path, *tok, &hay).with_context("--haystack"));
  std::vector<int32_t> ppl_tokens;
  const std::string ppl_path = o.ppl_text.empty() ? hay_path : o.ppl_text;
  if (o.ppl_tokens > 0) {
    Haystack text;
    TIDAL_RETURN_IF_ERROR(load_haystack(ppl_path, *tok, &text).with_context("--ppl-text"));
    if (int64_t(text.tokens.size()) < o.ppl_tokens) {
      return out_of_range("--ppl-text " + ppl_path + " has fewer than " +
                          std::to_string(o.ppl_tokens) + " tokens");
    }
    ppl_tokens = perplexity_stream(cfg.bos_token_id, text.tokens, 0, o.ppl_tokens);
  }
  std::unique_ptr<NeedleMaker> maker;
  TIDAL_RETURN_IF_ERROR(NeedleMaker::create(*tok, cfg.bos_token_id, std::move(hay), &maker));
  std::vector<NeedleCase> cases;
  TIDAL_RETURN_IF_ERROR(
      maker->make_grid(lengths, depths, o.needles, o.common.seed, o.gen_tokens, &cases));

  // Resume: the earlier run's per-case answers, probes and perplexities.
  const json settings = {{"model", dir},
                         {"haystack", hay_path},
                         {"ppl_text", ppl_path},
                         {"budget", o.budget},
                         {"granularity", o.granularity},
                         {"seed", o.common.seed},
                         {"gen_tokens", o.gen_tokens},
                         {"sparse_question", o.sparse_question},
                         {"ppl_tokens", o.ppl_tokens},
                         {"ppl_checksum", token_checksum(ppl_tokens)}};
  json state = {{"needle", json::object()}, {"probe", json::object()}, {"ppl", json::object()}};
  if (!o.common.resume_path.empty()) {
    // What the run reads back of the state's entries (a NaN perplexity is written as null).
    const std::vector<ResultField> needle = {{"retrieved", JsonType::kBool},
                                             {"kv_rows", JsonType::kNumber},
                                             {"full_kv_rows", JsonType::kNumber}};
    const std::vector<ResultField> probe = {
        {"layers", JsonType::kNumber},      {"heads", JsonType::kNumber},
        {"budget", JsonType::kNumber},      {"steps", JsonType::kNumber},
        {"mass_max", JsonType::kNumbers},   {"mass_sum", JsonType::kNumbers},
        {"recall_sum", JsonType::kNumbers}, {"overlap_sum", JsonType::kNumbers}};
    json prior;
    TIDAL_RETURN_IF_ERROR(read_resume_json(o.common.resume_path, "calibrate",
                                           {{"state.needle", true, needle},
                                            {"state.probe", true, probe},
                                            {"state.ppl", true, {}, JsonType::kNumberOrNull}},
                                           &prior));
    // Its entries are keyed by case and candidate: the model and texts that made them (and the
    // settings the keys leave out) are compared here.
    TIDAL_RETURN_IF_ERROR(check_resume_settings(
        o.common.resume_path, prior["settings"], settings, {"model", "haystack", "ppl_text"},
        {"budget", "granularity", "seed", "gen_tokens", "sparse_question", "ppl_tokens"}));
    // The tokens the perplexities scored: a file from before calibrate scored ppl's stream holds
    // perplexities of the text's first ppl_tokens - 1 (and no checksum).
    if (o.ppl_tokens > 0 &&
        prior["settings"].value("ppl_checksum", json()) != settings["ppl_checksum"]) {
      return invalid_argument("--resume " + o.common.resume_path +
                              ": it scored other perplexity tokens (another --ppl-text or "
                              "tokenizer, or --ppl-tokens N as N - 1 tokens, before it scored "
                              "tidal ppl's N)");
    }
    for (const auto& [key, sums] : prior["state"]["probe"].items()) {
      TIDAL_RETURN_IF_ERROR(check_probe_sums(
          sums, cfg,
          "--resume " + o.common.resume_path + ": state.probe[" + json(key).dump() + "]"));
    }
    state = prior["state"];
  }
  const std::string json_path = o.common.json_path.empty() ? o.common.resume_path
                                                           : o.common.json_path;
  json out = {{"command", "calibrate"}, {"settings", settings}};
  const bench::BenchInfo info = bench::collect_bench_info("tidal calibrate");
  auto save = [&]() -> Status {
    if (json_path.empty()) return ok_status();
    out["state"] = state;
    return write_file_atomic(json_path, out.dump() + "\n");
  };

  int64_t total = 0;
  for (const NeedleCase& c : cases) {
    for (const Variant& v : cands) total += !state["needle"].contains(needle_case_key(v.label, c.spec));
    total += !state["probe"].contains(spec_key(c.spec));
  }
  std::vector<const Variant*> ppl_todo;
  for (const Variant& v : cands) {
    if (o.ppl_tokens > 0 && !state["ppl"].contains(v.label)) ppl_todo.push_back(&v);
  }
  const int64_t max_len = std::max(*std::max_element(lengths.begin(), lengths.end()), o.ppl_tokens);
  const bool work = total > 0 || !ppl_todo.empty();
  // The outputs are checked before any work, once the engine's settings pass: an unwritable
  // --json was found after the first case, the policy file after the whole sweep. The JSON is
  // written at once (the settings, the resumed state).
  engine::EngineConfig config;  // the engine's, loaded below
  if (work) TIDAL_RETURN_IF_ERROR(harness_engine_config(o.common, dir, max_len, o.budget, &config));
  const std::string policy_path = o.out.empty() ? dir + "/" + kPolicyFileName : o.out;
  if (!o.dry_run) {
    const Status writable = check_writable(policy_path);
    if (!writable.ok()) {
      return invalid_argument(
          (o.out.empty() ? "the policy file " + policy_path + " (--out)" : "--out " + policy_path) +
          ": " + writable.message());
    }
  }
  TIDAL_RETURN_IF_ERROR(save());
  std::unique_ptr<engine::Engine> engine;
  if (work) TIDAL_RETURN_IF_ERROR(engine::Engine::load(dir, config, &engine));
  std::fprintf(stderr, "tidal: calibrate: %zu candidates (+ full) on %zu needle cases%s\n",
               cands.size() - 1, cases.size(),
               o.ppl_tokens > 0 ? (" and a " + std::to_string(o.ppl_tokens) +
                                   "-token perplexity stream").c_str()
                                : "");
  Progress progress("calibrate: needle", "runs", 2.0);
  progress.show_elapsed(true);
  progress.start(total);
  int64_t finished = 0;
  for (const NeedleCase& c : cases) {
    std::vector<const Variant*> todo;
    for (const Variant& v : cands) {
      if (!state["needle"].contains(needle_case_key(v.label, c.spec))) todo.push_back(&v);
    }
    if (!todo.empty()) {
      std::vector<NeedleRun> runs;
      TIDAL_RETURN_IF_ERROR(run_needle_case(*engine, *tok, c, todo, o.sparse_question, &runs));
      for (size_t i = 0; i < todo.size(); ++i) {
        state["needle"][needle_case_key(todo[i]->label, c.spec)] = {
            {"retrieved", runs[i].retrieved}, {"output", runs[i].text},
            {"kv_rows", runs[i].kv_rows}, {"full_kv_rows", runs[i].full_kv_rows}};
      }
      finished += int64_t(todo.size());
    }
    if (!state["probe"].contains(spec_key(c.spec))) {
      LayerProbe p;
      TIDAL_RETURN_IF_ERROR(probe_needle_case(*engine, c, o.budget, o.sparse_question, &p));
      state["probe"][spec_key(c.spec)] = probe_sums(p);
      finished += 1;
    }
    progress.update(finished);
    TIDAL_RETURN_IF_ERROR(save());
  }
  progress.finish();
  if (!ppl_todo.empty()) {
    Progress pp("calibrate: perplexity", "decode steps", 2.0);
    pp.show_elapsed(true);
    const int64_t steps = o.ppl_tokens - 1;  // decode steps a stream takes (BOS is prefilled)
    pp.start(steps * int64_t(ppl_todo.size()));
    const size_t batch = size_t(o.common.max_batch);
    int64_t before = 0;
    for (size_t b = 0; b < ppl_todo.size(); b += batch) {
      const std::vector<const Variant*> part(
          ppl_todo.begin() + long(b), ppl_todo.begin() + long(std::min(ppl_todo.size(), b + batch)));
      std::vector<PplRun> runs;
      TIDAL_RETURN_IF_ERROR(run_ppl_streams(*engine, ppl_tokens, part, &runs,
                                            [&](int64_t d) { pp.update(before + d); }));
      before += steps * int64_t(part.size());
      for (size_t i = 0; i < part.size(); ++i) state["ppl"][part[i]->label] = runs[i].perplexity();
      TIDAL_RETURN_IF_ERROR(save());
    }
    pp.finish();
  }

  // Scores.
  std::vector<CandidateScore> scores;
  for (const Variant& v : cands) {
    CandidateScore s;
    s.sparse_start = v.attention.tidal.sparse_start;
    if (v.attention.tidal.reselect_layers) s.reselect = *v.attention.tidal.reselect_layers;
    double rows = 0, full_rows = 0;
    for (const NeedleCase& c : cases) {
      const json& r = state["needle"][needle_case_key(v.label, c.spec)];
      s.hits += r.value("retrieved", false);
      rows += r.value("kv_rows", 0.0);
      full_rows += r.value("full_kv_rows", 0.0);
    }
    s.cost = full_rows > 0 ? rows / full_rows : NAN;
    const json& ppl = state["ppl"].contains(v.label) ? state["ppl"][v.label] : json();
    s.ppl = ppl.is_number() ? ppl.get<double>() : NAN;
    scores.push_back(s);
  }
  const CandidateScore full = scores[0];
  const std::vector<CandidateScore> tidal_scores(scores.begin() + 1, scores.end());
  bool matched = false;
  const size_t chosen = 1 + choose_candidate(tidal_scores, full.hits, full.ppl, o.miss_tolerance,
                                             o.ppl_tolerance, &matched);
  const std::string def_label = layers_label(2, model::default_reselect_layers(cfg.num_layers, 2));
  size_t def = 0;
  for (size_t i = 0; i < cands.size(); ++i) def = cands[i].label == def_label ? i : def;

  // The ranking: accuracy first (needle hits, perplexity), then cost.
  std::vector<size_t> order;
  for (size_t i = 0; i < cands.size(); ++i) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const auto key = [&](size_t i) {
      return std::make_tuple(-scores[i].hits,
                             std::isfinite(scores[i].ppl) ? scores[i].ppl : 0.0, scores[i].cost);
    };
    return key(a) < key(b);
  });
  bench::BenchInfo table_info = info;
  table_info.extra = {{"model", std::filesystem::path(dir).filename().string()},
                      {"budget", std::to_string(o.budget)},
                      {"granularity", o.granularity},
                      {"needle_cases", std::to_string(cases.size())},
                      {"lengths", o.lengths},
                      {"ppl_tokens", std::to_string(o.ppl_tokens)}};
  bench::Table table(table_info, {{"rank", 4, true, 0},
                                  {"layers", 10, false, 0},
                                  {"note", 18, false, 0},
                                  {"needle", 6, true, 0},
                                  {"needle%", 7, true, 1},
                                  {"ppl", 9, true, 3},
                                  {"ppl/full", 8, true, 4},
                                  {"rows/full", 9, true, 3},
                                  {"match", 5, false, 0}});
  table.print_header(
      {"haystack=" + hay_path + (o.ppl_tokens > 0 ? "  ppl_text=" + ppl_path : ""),
       "layers S:R: first selection layer S, re-selection layers R (- none); needle: cases "
       "retrieved of " + std::to_string(cases.size()),
       "rows/full: KV rows the needle answers' decode steps read, over full's; match: keeps "
       "full's accuracy (misses +" + std::to_string(o.miss_tolerance) + ", ppl +" +
       std::to_string(int(std::lround(o.ppl_tolerance * 100))) + "%)",
       "ranked by accuracy (needle, then perplexity), then cost; the choice is the cheapest "
       "match"});
  int64_t rank = 0;
  for (size_t i : order) {
    std::string note = i == 0 ? "full" : "";
    if (i == def) note += "default";
    if (i == chosen) note += note.empty() ? "CHOSEN" : "+CHOSEN";
    const bool match = i > 0 && matches_full(scores[i], full.hits, full.ppl, o.miss_tolerance,
                                             o.ppl_tolerance);
    table.add_row({++rank, cands[i].label, note.empty() ? "-" : note, scores[i].hits,
                   100.0 * double(scores[i].hits) / double(cases.size()), scores[i].ppl,
                   scores[i].ppl / full.ppl, scores[i].cost, i == 0 ? "-" : match ? "yes" : "no"});
  }
  LayerProbe probe;
  for (const NeedleCase& c : cases) probe.add(probe_from(state["probe"][spec_key(c.spec)]));
  print_probe(probe);

  const CandidateScore& pick = scores[chosen];
  const std::string summary =
      calibration_summary(o, cases.size(), pick, full, def_label, scores[def], matched);
  std::printf("\n# chosen: sparse_start %lld, reselect_layers %s\n# %s\n",
              static_cast<long long>(pick.sparse_start),
              layers_label(pick.sparse_start, pick.reselect).substr(
                  std::to_string(pick.sparse_start).size() + 1).c_str(),
              summary.c_str());
  json calibration = {
      {"tool", "tidal calibrate"}, {"commit", info.commit}, {"device", harness_device_name(o.common, info.device)},
      {"budget", o.budget}, {"granularity", o.granularity}, {"lengths", lengths},
      {"depths", depths}, {"needles_per_cell", o.needles}, {"seed", o.common.seed},
      {"ppl_tokens", o.ppl_tokens}, {"needle_cases", cases.size()},
      {"needle_retrieved", pick.hits}, {"full_needle_retrieved", full.hits},
      {"ppl", pick.ppl}, {"full_ppl", full.ppl}, {"kv_rows_vs_full", pick.cost},
      {"matches_full", matched},
      {"default_layers", {{"layers", def_label}, {"needle_retrieved", scores[def].hits},
                          {"ppl", scores[def].ppl}, {"kv_rows_vs_full", scores[def].cost}}},
      {"summary", summary}};
  out["calibration"] = calibration;
  out["ranking"] = json::array();
  for (size_t i : order) {
    out["ranking"].push_back({{"layers", cands[i].label}, {"needle_retrieved", scores[i].hits},
                              {"ppl", scores[i].ppl}, {"kv_rows_vs_full", scores[i].cost}});
  }
  out["probe"] = probe_json(probe);
  TIDAL_RETURN_IF_ERROR(save());
  if (o.dry_run) return ok_status();
  TIDAL_RETURN_IF_ERROR(
      write_policy_file(policy_path, pick.sparse_start, pick.reselect, calibration.dump()));
  std::printf("# wrote %s\n", policy_path.c_str());
  return ok_status();
}

}  // namespace tidal::launch
