// SPDX-License-Identifier: Apache-2.0
// Running accuracy cases on an engine, for tidal niah / ppl / calibrate:
// - a needle case: its prompt prefilled once (prefill is dense under every policy), forked for
//   each policy (Engine::fork), every fork decoding its greedy answer;
// - a perplexity stream: BOS, then every token of a text a decode step, one sequence per policy;
// - a layer probe: one run in which every layer is a selection layer (so its output is full
//   attention's), reading each layer's top-K lists and attention probabilities after it, which
//   says where the needle is read and how far the layers' lists agree.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "launch/accuracy.h"
#include "launch/needle.h"
#include "model/tokenizer.h"
#include "runtime/engine/engine.h"

namespace tidal::launch {

struct NeedleRun {
  std::vector<int32_t> tokens;  // the answer's greedy tokens
  std::string text;             // decoded (special tokens skipped)
  bool retrieved = false;
  double kv_rows = 0;       // KV rows the decode steps read (Quest page bounds included)
  double full_kv_rows = 0;  // what full attention reads over the same steps
};

// Runs `variants` on case `c`: out[i] is variants[i]'s answer. The question is prefilled with
// the haystack (TidalDecode's protocol), or with `sparse_question` decoded token by token under
// each policy (Quest's). Uses at most the engine's max_batch sequences at once.
Status run_needle_case(engine::Engine& e, const model::Tokenizer& tok, const NeedleCase& c,
                       const std::vector<const Variant*>& variants, bool sparse_question,
                       std::vector<NeedleRun>* out);

// Per-layer diagnostics of needle cases, over the decode steps of their answers (sums, so the
// probes of several cases add up; the accessors give the means).
struct LayerProbe {
  int64_t layers = 0, heads = 0, budget = 0;
  int64_t steps = 0;  // decode steps probed, over every case added
  // [layers]: the largest attention probability mass one head put on the needle sentence in one
  // step (the needle "is read" where this is high).
  std::vector<double> needle_mass_max;
  std::vector<double> needle_mass_sum;    // [layers], over heads and steps
  // [layers], over heads and steps: the share of the number's tokens inside the head's top-K list
  // (what a selection layer there would keep of the answer).
  std::vector<double> number_recall_sum;
  // [layers * layers], over heads and steps: |list_a ∩ list_b| / |list_a| for the same head (how
  // much of layer a's selection layer b would keep).
  std::vector<double> overlap_sum;

  void add(const LayerProbe& other);
  double needle_mass_mean(int64_t layer) const;
  double number_recall(int64_t layer) const;
  double overlap(int64_t a, int64_t b) const;
};

// The probe at budget K with per-query-head lists (the greedy answer is full attention's).
Status probe_needle_case(engine::Engine& e, const NeedleCase& c, int64_t budget,
                         bool sparse_question, LayerProbe* out);

struct PplRun {
  std::vector<double> nll;  // [tokens - 1]: -log p(token i+1 | tokens 0..i), natural log
  double kv_rows = 0, full_kv_rows = 0;

  double perplexity() const;                         // over every position
  double perplexity(size_t begin, size_t end) const;  // over positions [begin, end)
};

// Streams `tokens` (tokens[0] is BOS, the one-token prompt) for every variant, max_batch
// sequences at a time; progress(done) counts decode steps of all variants.
Status run_ppl_streams(engine::Engine& e, const std::vector<int32_t>& tokens,
                       const std::vector<const Variant*>& variants, std::vector<PplRun>* out,
                       const std::function<void(int64_t)>& progress);

// The model directory of a harness run: --model, else the embedded model.
Status resolve_harness_model(const AccuracyCommon& c, const AccuracyDefaults& d, std::string* dir);
// A text path: `given`, else <text_dir>/austen/persuasion.txt (held out from the embedded
// model's training).
std::string harness_text(const AccuracyDefaults& d, const std::string& given);
// The engine settings of a sweep, checked as a load checks them (the model's context, the
// device's memory) without loading: contexts up to max_context, budgets up to max_budget, the
// device flags applied (errors name the flag). The commands check them before any work (their
// outputs are made then) and load the model with them later (engine::Engine::load).
Status harness_engine_config(const AccuracyCommon& c, const std::string& dir, int64_t max_context,
                             int64_t max_budget, engine::EngineConfig* out);
// The device the device flags pick, for the results' records: the GPU's name ("NVIDIA H200
// (cuda:0)"), else `cpu_model` (the header's CPU description).
std::string harness_device_name(const AccuracyCommon& c, const std::string& cpu_model);

// A field of the results a --resume file holds, and the JSON type it is read back as.
enum class JsonType {
  kString,
  kNumber,
  kBool,
  kArray,
  kNumbers,       // an array of numbers
  kNumberOrNull,  // NaN is written as null
};
struct ResultField {
  const char* name;
  JsonType type;
};
// Entries of a --resume file that the command reads back: at `at` (a key of the file's object,
// or keys joined by '.': "state.needle"), a list, or with `keyed` an object of them by key; a
// missing one is empty (made so in the JSON read). Each entry is an object holding every field
// of `fields` with its type, or with no fields, a value of type `type`.
struct ResumeEntries {
  std::string at;
  bool keyed = false;
  std::vector<ResultField> fields;
  JsonType type = JsonType::kNumber;
};
// Reads the JSON an interrupted `tidal <command>` run left (--resume): an object naming the
// command, its "settings" an object, and every list of `entries` as it says. Anything else is
// invalid_argument naming the file and the entry (the commands read the entries back by type,
// and nlohmann throws on a wrong one).
Status read_resume_json(const std::string& path, const std::string& command,
                        const std::vector<ResumeEntries>& entries, nlohmann::json* out);
// ... whose "results" is a list of objects that each hold every field of `fields`.
Status read_resume_json(const std::string& path, const std::string& command,
                        const std::vector<ResultField>& fields, nlohmann::json* out);

// Whether the file or directory `prior` (a --resume file's setting) is `now`, however the two
// are spelled ("a/../b" and "b", relative and absolute).
bool same_path(const nlohmann::json& prior, const std::string& now);

// Refuses a --resume file `path` whose settings (`prior`, its "settings") are not this run's
// (`now`): the settings named in `paths` are files or directories (same_path), those in `values`
// compared as they are. The error names the first that differs, with both values: "--resume F:
// it ran with another haystack ("emma.txt", now "persuasion.txt")".
Status check_resume_settings(const std::string& path, const nlohmann::json& prior,
                             const nlohmann::json& now, const std::vector<const char*>& paths,
                             const std::vector<const char*>& values);

// Makes the --png-dir folder `dir` (nothing when empty), before any work: one that cannot be
// made is an error naming the flag.
Status make_png_dir(const std::string& dir);

// The key of one (variant, needle case) result in a sweep's JSON: "label|length|depth|index".
std::string needle_case_key(const std::string& variant, const NeedleSpec& s);

// KV rows full attention reads in one decode step at length n.
double full_rows_per_step(const model::ModelConfig& c, int64_t n);
double kv_rows_of(const model::AttentionStats& s);

}  // namespace tidal::launch
