// SPDX-License-Identifier: Apache-2.0
// agreement_bench: greedy token agreement of sparse attention policies (TidalDecode at three list
// granularities and re-selection layers, Quest) with full attention on a real checkpoint, over
// prompts cut from public-domain texts. Teacher-forced agreement isolates per-step fidelity;
// free-running decoding shows how far a policy follows the full continuation on its own.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "benchmarks/accuracy/passages.h"
#include "benchmarks/common/table.h"
#include "model/attention_policy.h"
#include "model/tokenizer.h"
#include "runtime/engine/engine.h"

#ifndef TIDAL_SOURCE_DIR
#define TIDAL_SOURCE_DIR "."
#endif

namespace tidal::bench {
namespace {

using model::AttentionKind;
using model::AttentionPolicy;
using model::Granularity;

struct Options {
  std::string model_dir = TIDAL_SOURCE_DIR "/../shared/models/stories260K/hf";
  std::string text_dir = TIDAL_SOURCE_DIR "/../shared/text";
  int64_t prompts = 20;
  int64_t prompt_tokens = 256;  // BOS included
  int64_t gen_tokens = 255;     // decode steps; prompt + gen must fit the context
  uint64_t seed = 1;
  std::vector<int64_t> budgets = {16, 32, 64, 128};
  std::vector<std::string> granularities = {"per-query-head", "per-kv-head", "shared"};
  std::vector<std::string> reselect = {"none", "3", "4"};  // a layer, or "none"
  bool tidal = true, quest = true;
  int64_t sparse_start = 2, quest_dense_layers = 2;
  int64_t batch = 16;
  int64_t threads = 0;  // engines run side by side; Default (0): one per CPU
  std::string json_path, csv_path;
};

// Counts of one variant, summed over its jobs.
struct Tally {
  int64_t tf_match = 0, fr_match = 0, fr_prefix = 0, wrong = 0;
  double rows = 0;  // teacher-forced runs' statistics
  int64_t overlap_kept = 0, overlap_total = 0;

  void add(const Tally& t) {
    tf_match += t.tf_match, fr_match += t.fr_match, fr_prefix += t.fr_prefix, wrong += t.wrong;
    rows += t.rows, overlap_kept += t.overlap_kept, overlap_total += t.overlap_total;
  }
};

struct Variant {
  std::string policy, granularity, reselect;
  int64_t budget = 0;
  AttentionPolicy p;
  bool control = false;  // must reproduce full exactly
  Tally total;
  int64_t pending = 0;  // jobs not yet run
};

struct Reference {
  std::vector<int32_t> tokens;  // r_0 (after prefill) .. r_gen: greedy full continuation
  std::vector<float> prefill;   // [vocab] logits after the prompt
  std::vector<float> logits;    // [gen, vocab]: step i fed r_i
  double rows = 0;              // KV rows the full decode steps read
};

struct Job {
  size_t variant = 0, prompt = 0;
  bool teacher_forced = true;
  engine::SeqId id = 0;
  int32_t next = 0;  // token fed at the next step
  bool diverged = false;
};

int32_t argmax(const float* v, int64_t n) { return int32_t(std::max_element(v, v + n) - v); }

// Logits outside 1e-4 abs + 1e-4 rel of `want`, or non-finite.
int64_t count_off(const float* got, const float* want, int64_t n) {
  int64_t off = 0;
  for (int64_t i = 0; i < n; ++i)
    off +=
        !(std::isfinite(got[i]) && std::fabs(got[i] - want[i]) <= 1e-4 + 1e-4 * std::fabs(want[i]));
  return off;
}

int64_t count_nonfinite(const float* v, int64_t n) {
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += !std::isfinite(v[i]);
  return bad;
}

// KV read by decode steps in units of one position's K and V rows (2 x head_dim elements): a Quest
// page bound (min or max, head_dim elements) is half of one, as `tidal bench` weighs its bytes.
double total_rows(const model::AttentionStats& s) {
  double rows = 0.5 * double(s.quest_metadata_rows);
  for (int64_t r : s.rows) rows += double(r);
  return rows;
}

Status build_variants(const Options& o, const model::ModelConfig& c, int64_t context,
                      std::vector<Variant>* out) {
  auto tidal = [&](Granularity g, const std::string& re, int64_t k) {
    Variant v;
    v.policy = "tidal";
    v.granularity = model::granularity_name(g);
    v.reselect = re;
    v.budget = k;
    v.p.kind = AttentionKind::kTidal;
    v.p.tidal.budget = k;
    v.p.tidal.sparse_start = o.sparse_start;
    v.p.tidal.granularity = g;
    v.p.tidal.reselect_layers = std::vector<int64_t>{};
    if (re != "none") v.p.tidal.reselect_layers = std::vector<int64_t>{std::stoll(re)};
    return v;
  };
  std::vector<Granularity> grans;
  for (const std::string& name : o.granularities) {
    Granularity g;
    TIDAL_RETURN_IF_ERROR(model::parse_granularity(name, &g));
    grans.push_back(g);
  }
  for (const std::string& re : o.reselect) {
    if (re == "none") continue;
    if (re.empty() || re.find_first_not_of("0123456789") != std::string::npos)
      return invalid_argument("--reselect takes layer numbers or 'none', got '" + re + "'");
  }
  for (int64_t k : o.budgets) {
    if (o.tidal)
      for (Granularity g : grans)
        for (const std::string& re : o.reselect) out->push_back(tidal(g, re, k));
    if (o.quest) {
      Variant v;
      v.policy = "quest";
      v.granularity = "per-query-head";
      v.reselect = "-";
      v.budget = k;
      v.p.kind = AttentionKind::kQuest;
      v.p.quest.budget = k;
      v.p.quest.page_size = 16;
      v.p.quest.dense_layers = o.quest_dense_layers;
      out->push_back(v);
    }
  }
  // Controls (STYLE.md rule 31): full run again in a mixed batch, and tidal with a budget that
  // covers the whole context (its re-selection lists are then identical: overlap 100%).
  Variant full;
  full.policy = "full";
  full.granularity = full.reselect = "-";
  full.budget = context;
  full.control = true;
  out->push_back(full);
  std::string re = "none";
  for (const std::string& r : o.reselect) {
    if (r != "none" && std::stoll(r) > o.sparse_start && std::stoll(r) < c.num_layers) re = r;
    if (re != "none") break;
  }
  Variant dense_tidal = tidal(Granularity::kPerQueryHead, re, context);
  dense_tidal.control = true;
  out->push_back(dense_tidal);
  for (const Variant& v : *out) TIDAL_RETURN_IF_ERROR(v.p.validate(c, 16));
  return ok_status();
}

// Greedy full-attention continuations of prompts [first, last) (at most max_batch), together.
Status run_references(engine::Engine* e, const std::vector<Passage>& passages, int64_t gen,
                      size_t first, size_t last, std::vector<Reference>* refs) {
  const int64_t vocab = e->model_config().vocab, n = int64_t(last - first);
  std::vector<float> logits(size_t(n * vocab));
  std::vector<engine::SeqId> ids;
  for (size_t p = first; p < last; ++p) {
    Reference& r = (*refs)[p];
    engine::SeqId id = 0;
    TIDAL_RETURN_IF_ERROR(e->add_sequence(passages[p].tokens, &id));
    r.prefill.resize(size_t(vocab));
    TIDAL_RETURN_IF_ERROR(e->prefill(id, make_view(r.prefill.data(), DType::kF32, {vocab})));
    r.tokens.assign(1, argmax(r.prefill.data(), vocab));
    r.logits.resize(size_t(gen * vocab));
    ids.push_back(id);
  }
  for (int64_t step = 0; step < gen; ++step) {
    std::vector<int32_t> tokens;
    for (size_t p = first; p < last; ++p) tokens.push_back((*refs)[p].tokens.back());
    TIDAL_RETURN_IF_ERROR(
        e->decode(ids, tokens, make_view(logits.data(), DType::kF32, {n, vocab})));
    for (int64_t j = 0; j < n; ++j) {
      Reference& r = (*refs)[first + size_t(j)];
      const float* row = logits.data() + j * vocab;
      std::copy(row, row + vocab, r.logits.begin() + step * vocab);
      r.tokens.push_back(argmax(row, vocab));
    }
  }
  for (int64_t j = 0; j < n; ++j) {
    (*refs)[first + size_t(j)].rows = total_rows(e->stats(ids[size_t(j)]));
    e->release(ids[size_t(j)]);
  }
  return ok_status();
}

// Runs `jobs` (at most max_batch) together: prefill each, then `gen` decode steps, teacher-forced
// jobs fed the reference tokens and free-running ones their own argmax. tallies[i]: jobs[i]'s.
Status run_jobs(engine::Engine* e, const std::vector<Passage>& passages,
                const std::vector<Reference>& refs, const std::vector<Variant>& variants,
                int64_t gen, std::vector<Job> jobs, std::vector<Tally>* tallies) {
  const int64_t vocab = e->model_config().vocab, n = int64_t(jobs.size());
  tallies->assign(jobs.size(), Tally());
  std::vector<float> logits(size_t(n * vocab));
  std::vector<engine::SeqId> ids;
  for (size_t i = 0; i < jobs.size(); ++i) {
    Job& j = jobs[i];
    TIDAL_RETURN_IF_ERROR(e->add_sequence(passages[j.prompt].tokens, variants[j.variant].p, &j.id));
    TIDAL_RETURN_IF_ERROR(e->prefill(j.id, make_view(logits.data(), DType::kF32, {vocab})));
    // Prefill is dense whatever the policy: it must give the reference's logits.
    (*tallies)[i].wrong += count_off(logits.data(), refs[j.prompt].prefill.data(), vocab) > 0;
    j.next = refs[j.prompt].tokens[0];
    ids.push_back(j.id);
  }
  for (int64_t step = 0; step < gen; ++step) {
    std::vector<int32_t> tokens;
    for (const Job& j : jobs) tokens.push_back(j.next);
    TIDAL_RETURN_IF_ERROR(
        e->decode(ids, tokens, make_view(logits.data(), DType::kF32, {n, vocab})));
    for (int64_t i = 0; i < n; ++i) {
      Job& j = jobs[size_t(i)];
      Tally& t = (*tallies)[size_t(i)];
      const bool control = variants[j.variant].control;
      const Reference& r = refs[j.prompt];
      const float* row = logits.data() + i * vocab;
      const int32_t got = argmax(row, vocab), want = r.tokens[size_t(step + 1)];
      t.wrong += count_nonfinite(row, vocab) > 0;
      if (j.teacher_forced) {
        t.tf_match += got == want;
        j.next = want;
        if (control)
          t.wrong += got != want || count_off(row, &r.logits[size_t(step * vocab)], vocab) > 0;
      } else {
        t.fr_match += got == want;
        j.diverged = j.diverged || got != want;
        t.fr_prefix += !j.diverged;
        j.next = got;
        if (control) t.wrong += got != want;
      }
    }
  }
  for (size_t i = 0; i < jobs.size(); ++i) {
    const model::AttentionStats s = e->stats(jobs[i].id);
    if (jobs[i].teacher_forced) {
      (*tallies)[i].rows = total_rows(s);
      (*tallies)[i].overlap_kept = s.overlap_kept;
      (*tallies)[i].overlap_total = s.overlap_total;
    }
    e->release(jobs[i].id);
  }
  return ok_status();
}

// Calls fn(engine, task) for tasks 0..count-1 on one thread per engine; the first error wins.
template <typename Fn>
Status parallel_tasks(const std::vector<std::unique_ptr<engine::Engine>>& engines, size_t count,
                      Fn fn) {
  std::mutex mu;
  size_t next = 0;
  Status first_error = ok_status();
  auto worker = [&](engine::Engine* e) {
    for (;;) {
      size_t task = 0;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (next >= count || !first_error.ok()) return;
        task = next++;
      }
      const Status st = fn(e, task);
      if (!st.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (first_error.ok()) first_error = st;
      }
    }
  };
  std::vector<std::thread> threads;
  for (const auto& e : engines) threads.emplace_back(worker, e.get());
  for (std::thread& t : threads) t.join();
  return first_error;
}

std::vector<Column> columns() {
  return {{"policy", 6, false, 0},   {"granularity", 14, false, 0}, {"reselect", 8, false, 0},
          {"K", 5, true, 0},         {"tf_agree%", 9, true, 2},     {"fr_prefix", 9, true, 1},
          {"fr_exact%", 9, true, 2}, {"overlap%", 8, true, 1},      {"rows/full", 9, true, 3},
          {"#wrong", 6, true, 0}};
}

std::string short_name(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const std::filesystem::path p(path);
  // A checkpoint in an "hf" folder is named for its parent (stories260K/hf).
  return p.filename() == "hf" ? p.parent_path().filename().string() : p.filename().string();
}

// Prints the header (machine, model, run settings, column glossary, each prompt's source).
Table make_table(const Options& o, const model::ModelConfig& c, int64_t threads,
                 const std::vector<Passage>& passages) {
  BenchInfo info = collect_bench_info("agreement_bench");
  info.extra = {{"backend", "cpu-ref"},
                {"model", short_name(o.model_dir)},
                {"layers", std::to_string(c.num_layers)},
                {"heads", std::to_string(c.num_heads) + "/" + std::to_string(c.num_kv_heads)},
                {"prompts", std::to_string(o.prompts)},
                {"prompt_tokens", std::to_string(o.prompt_tokens)},
                {"gen_tokens", std::to_string(o.gen_tokens)},
                {"seed", std::to_string(o.seed)},
                {"batch", std::to_string(o.batch)},
                {"threads", std::to_string(threads)},
                {"sparse_start", std::to_string(o.sparse_start)},
                {"quest", "page 16, dense_layers " + std::to_string(o.quest_dense_layers)}};
  std::vector<std::string> notes = {
      "model_dir=" + o.model_dir + "  text_dir=" + o.text_dir,
      "tf_agree%: teacher-forced steps (fed full's continuation) whose argmax is full's",
      "next token. fr_prefix: free-running greedy tokens equal to full's before the first",
      "difference (mean). fr_exact%: free-running positions equal to full's.",
      "overlap%: share of a list's positions the re-selection layer keeps.",
      "rows/full: KV read by decode steps (K + V rows; a Quest page bound counts half), over",
      "full's.",
      "#wrong: prefill logits off full's, non-finite logits; controls (full, tidal K=context):",
      "every step off full's logits (1e-4) or token."};
  for (size_t i = 0; i < passages.size(); ++i) {
    notes.push_back("prompt " + std::to_string(i) + ": " + passages[i].file + " byte " +
                    std::to_string(passages[i].offset));
  }
  Table table(info, columns());
  table.print_header(notes);
  return table;
}

std::vector<Cell> variant_row(const Variant& v, int64_t prompts, int64_t gen, double full_rows) {
  const Tally& t = v.total;
  const double steps = double(prompts * gen);
  const bool reselects = v.policy == "tidal" && v.reselect != "none";
  // A control lists every position at both selection layers: the overlap must be 100%.
  const bool overlap_off = v.control && reselects && t.overlap_kept != t.overlap_total;
  const double overlap =
      reselects ? 100.0 * double(t.overlap_kept) / double(std::max<int64_t>(t.overlap_total, 1))
                : std::nan("");
  return {v.policy,
          v.granularity,
          v.reselect,
          v.budget,
          100.0 * double(t.tf_match) / steps,
          double(t.fr_prefix) / double(prompts),
          100.0 * double(t.fr_match) / steps,
          overlap,
          t.rows / full_rows,
          t.wrong + int64_t(overlap_off)};
}

Status run(const Options& o, int64_t* failed) {
  const auto start = std::chrono::steady_clock::now();
  std::unique_ptr<model::Tokenizer> tokenizer;
  TIDAL_RETURN_IF_ERROR(model::Tokenizer::load_from_dir(o.model_dir, &tokenizer));
  std::vector<Passage> passages;
  TIDAL_RETURN_IF_ERROR(
      pick_passages(o.text_dir, *tokenizer, o.prompts, o.prompt_tokens, o.seed, &passages));

  model::ModelConfig c;
  TIDAL_RETURN_IF_ERROR(model::load_model_config(o.model_dir, &c));
  const int64_t need = o.prompt_tokens + o.gen_tokens;
  if (need > c.max_position_embeddings) {
    return invalid_argument("prompt + gen tokens (" + std::to_string(need) +
                            ") exceed the model's context of " +
                            std::to_string(c.max_position_embeddings));
  }
  // The context: what the run needs, rounded up to 256 and capped to the model's.
  engine::EngineConfig ec;
  ec.max_batch = o.batch;
  ec.max_context = std::min<int64_t>((need + 255) / 256 * 256, c.max_position_embeddings);
  ec.max_budget = ec.max_context;
  // One engine per thread: an engine is not shared between threads.
  const int64_t threads =
      o.threads > 0 ? o.threads : std::max<int64_t>(1, std::thread::hardware_concurrency());
  std::vector<std::unique_ptr<engine::Engine>> engines{size_t(threads)};
  for (auto& e : engines) TIDAL_RETURN_IF_ERROR(engine::Engine::load(o.model_dir, ec, &e));

  std::vector<Variant> variants;
  TIDAL_RETURN_IF_ERROR(build_variants(o, c, ec.max_context, &variants));

  Table table = make_table(o, c, threads, passages);

  std::vector<Reference> refs(passages.size());
  const size_t batch = size_t(o.batch);
  TIDAL_RETURN_IF_ERROR(parallel_tasks(
      engines, (passages.size() + batch - 1) / batch, [&](engine::Engine* e, size_t task) {
        return run_references(e, passages, o.gen_tokens, task * batch,
                              std::min(passages.size(), (task + 1) * batch), &refs);
      }));
  double full_rows = 0;
  for (const Reference& r : refs) full_rows += r.rows;

  std::vector<Job> jobs;  // variant-major, so rows finish roughly in table order
  for (size_t v = 0; v < variants.size(); ++v) {
    for (size_t p = 0; p < passages.size(); ++p) {
      for (bool tf : {true, false}) jobs.push_back(Job{v, p, tf, 0, 0, false});
    }
    variants[v].pending = int64_t(passages.size()) * 2;
  }
  std::mutex mu;  // guards variants' totals, `printed` and the table
  size_t printed = 0;
  auto print_finished = [&] {
    for (; printed < variants.size() && variants[printed].pending == 0; ++printed) {
      table.add_row(variant_row(variants[printed], o.prompts, o.gen_tokens, full_rows));
    }
  };
  TIDAL_RETURN_IF_ERROR(parallel_tasks(
      engines, (jobs.size() + batch - 1) / batch, [&](engine::Engine* e, size_t task) {
        const auto first = jobs.begin() + long(task * batch);
        const auto last = jobs.begin() + long(std::min(jobs.size(), (task + 1) * batch));
        std::vector<Tally> tallies;
        TIDAL_RETURN_IF_ERROR(run_jobs(e, passages, refs, variants, o.gen_tokens,
                                       std::vector<Job>(first, last), &tallies));
        std::lock_guard<std::mutex> lock(mu);
        for (auto it = first; it != last; ++it) {
          variants[it->variant].total.add(tallies[size_t(it - first)]);
          variants[it->variant].pending -= 1;
        }
        print_finished();
        return ok_status();
      }));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("# elapsed_s=%.1f  decode_steps=%lld\n", seconds,
              (long long)((jobs.size() + passages.size()) * size_t(o.gen_tokens)));
  TIDAL_RETURN_IF_ERROR(table.write_files(o.json_path, o.csv_path));
  *failed = table.failed_rows();
  return ok_status();
}

}  // namespace
}  // namespace tidal::bench

int main(int argc, char** argv) {
  using namespace tidal::bench;
  Options o;
  CLI::App app{"agreement_bench: greedy agreement of sparse attention policies with full"};
  app.add_option("--model", o.model_dir, "Hugging Face checkpoint directory")
      ->capture_default_str();
  app.add_option("--text-dir", o.text_dir, "folder of corpora (subfolders of .txt files)")
      ->capture_default_str();
  app.add_option("--prompts", o.prompts, "prompts")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--prompt-tokens", o.prompt_tokens, "tokens per prompt, BOS included")
      ->capture_default_str()
      ->check(CLI::Range(2, 1 << 20));
  app.add_option("--gen-tokens", o.gen_tokens, "decode steps per prompt")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--seed", o.seed, "passage picks")->capture_default_str();
  app.add_option("--budgets", o.budgets, "token budgets K")
      ->capture_default_str()
      ->check(CLI::Range(2, 1 << 20));
  app.add_option("--granularity", o.granularities, "tidal list granularities")
      ->capture_default_str();
  app.add_option("--reselect", o.reselect, "tidal re-selection layers, each a layer or 'none'")
      ->capture_default_str();
  app.add_flag("!--no-tidal", o.tidal, "skip the tidal variants");
  app.add_flag("!--no-quest", o.quest, "skip the quest variants");
  app.add_option("--sparse-start", o.sparse_start, "tidal's first selection layer")
      ->capture_default_str();
  app.add_option("--quest-dense-layers", o.quest_dense_layers, "quest's dense layers")
      ->capture_default_str();
  app.add_option("--batch", o.batch, "sequences decoded together")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--threads", o.threads, "engines run side by side (0: one per CPU)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--json", o.json_path, "also write the table as JSON to this file");
  app.add_option("--csv", o.csv_path, "also write the table as CSV to this file");
  CLI11_PARSE(app, argc, argv);

  // The fixtures live outside the repository; without them there is nothing to measure.
  for (const std::string& need : {o.model_dir + "/config.json", o.text_dir}) {
    if (!std::filesystem::exists(need)) {
      std::printf("SKIP: %s is absent\n", need.c_str());
      return 0;
    }
  }
  int64_t failed = 0;
  const tidal::Status st = run(o, &failed);
  if (!st.ok()) {
    std::fprintf(stderr, "agreement_bench: %s\n", st.message().c_str());
    return 1;
  }
  if (failed > 0) {
    std::fprintf(stderr, "agreement_bench: FAILED: %lld rows have #wrong > 0\n", (long long)failed);
    return 1;
  }
  return 0;
}
