// SPDX-License-Identifier: Apache-2.0
// The accuracy commands (issue 12): `tidal niah` (needle-in-a-haystack over lengths x depths for
// every policy), `tidal ppl` (streaming perplexity, every token a decode step) and `tidal
// calibrate` (chooses a model's selection layers by measurement and writes tidal_policy.json).
// Their flags, option structs and the policy variants they compare.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "launch/cli.h"
#include "model/attention_policy.h"
#include "model/config.h"

namespace tidal::launch {

// Where the harnesses find their texts by default: ../shared/text beside the source tree.
struct AccuracyDefaults {
  std::string model_dir;  // the embedded model
  std::string text_dir;   // .../shared/text
};

// The policies a sweep compares: every combination of the lists below (full once).
struct VariantFlags {
  std::vector<std::string> policies = {"full", "tidal", "quest"};
  std::string budgets = "64";  // tidal and quest
  std::vector<std::string> granularities = {"per-query-head"};
  // tidal: "model" (tidal_policy.json when the model has one, else the depth-scaled rule),
  // "default" (the depth-scaled rule: 2 and 13/32 of the depth), "calibrated" (the file; an
  // error without one), or "S:R" / "S:R1+R2" / "S:-" (first selection layer S, re-selection
  // layers R, or none) / "S" (S with the depth's re-selection layer).
  std::vector<std::string> layers = {"model"};
  std::string corrections = "0";  // cache correction intervals (tidal and quest); 0: off
  std::string policy_file;        // default: <model>/tidal_policy.json
  // The flags above given on the command line ("--budget", ...): one that no listed policy
  // reads (--granularity with --policy full,quest, ...) is refused.
  std::vector<std::string> flags_given;
};

// One policy of a sweep.
struct Variant {
  std::string label;  // unique within the sweep: "tidal per-query-head 2:4 default K=64 corr=64"
  std::string policy, granularity, layers;  // table columns ("-" where not applicable)
  int64_t budget = 0;                       // 0: full
  int64_t correction = 0;
  model::AttentionPolicy attention;
};

struct AccuracyCommon {
  std::string model_dir;  // empty: the embedded model
  int64_t max_batch = 8;  // sequences decoded together (one slot holds a case's prefilled prompt)
  int64_t prefill_chunk = 2048;
  uint64_t seed = 1;        // needle cases (niah, calibrate; ppl has no --seed)
  std::string json_path;    // results (rewritten as the sweep goes)
  std::string resume_path;  // the JSON of an interrupted run: its finished work is kept
  std::string png_dir;      // pictures; empty: none
  DeviceFlags device;
};

// --needles at most (niah, calibrate): every case is made, its whole prompt held, before the
// first runs, so the count is bounded where it is given, not by running out of memory. Beyond
// any statistics a cell needs (benchmarks/README.md's sweeps use 5).
constexpr int64_t kMaxNeedles = 1000;
// "--needles must be in [1, kMaxNeedles], got N", or ok.
Status check_needles(int64_t needles);
// --max-batch of a command that runs needle cases (niah, calibrate): a case holds its prefilled
// prompt in one sequence and a policy's answer in each other, so at least 2 (checked with the
// flags; the engine checks the top of the range).
Status check_needle_batch(int64_t max_batch);

struct NiahOptions {
  AccuracyCommon common;
  VariantFlags variants;
  std::string lengths = "1K,4K";  // context lengths (K = 1024)
  std::string depths = "0,10,20,30,40,50,60,70,80,90,100";  // needle depths, percent
  int64_t needles = 3;     // seeded needles per (length, depth) cell
  int64_t gen_tokens = 12;
  std::string haystack;    // default: <text>/austen/persuasion.txt (held out from training)
  bool sparse_question = false;  // decode the question token by token (Quest's protocol)
  double min_accuracy = -1;      // fail (exit 1) when a policy retrieves less, percent (CI)
  bool min_accuracy_given = false;  // given: in [0, 100]; else no floor
};

struct PplOptions {
  AccuracyCommon common;
  VariantFlags variants;
  std::string text;        // default: <text>/austen/persuasion.txt
  int64_t tokens = 4096;   // text tokens scored (BOS + tokens - 1 of them fed)
  int64_t offset = 0;      // the text token to start from
  int64_t window = 0;      // curve: tokens per point, <= tokens; 0: tokens / 32, 16 to tokens
};

struct CalibrateOptions {
  AccuracyCommon common;
  int64_t budget = 64;
  std::string granularity = "per-query-head";
  std::string lengths = "4K";  // needle cases' lengths (K = 1024)
  std::string depths = "10,30,50,70,90";
  int64_t needles = 2;            // per (length, depth)
  int64_t gen_tokens = 12;
  bool sparse_question = false;
  std::string haystack;           // default as niah's
  int64_t ppl_tokens = 1024;      // perplexity: text tokens scored (ppl's --tokens); 0: none
  std::string ppl_text;           // default: the haystack
  std::string first_layers;       // candidates for S, e.g. "1-8" or "2,3,5"; empty: 1 .. L-2
  int64_t max_reselect = 1;       // re-selection layers per candidate: 0 or 1 (or 2)
  int64_t miss_tolerance = 0;     // needle cases a candidate may miss beyond full's
  double ppl_tolerance = 0.05;    // perplexity a candidate may add, relative to full's
  // --ppl-text and --ppl-tolerance, where given: without a stream (ppl_tokens 0) they are refused.
  std::vector<std::string> ppl_flags_given;
  std::string out;                // the policy file; default: <model>/tidal_policy.json
  bool dry_run = false;           // print the choice, write no policy file
};

// One calibration candidate's measurements.
struct CandidateScore {
  int64_t sparse_start = 2;
  std::vector<int64_t> reselect;
  int64_t hits = 0;       // needle cases retrieved
  double ppl = 0;         // streaming perplexity (NaN: not measured)
  double cost = 0;        // KV rows the decode steps read, over full's
};
// Whether a candidate keeps full's accuracy: at most `miss_tolerance` more needle misses, and a
// perplexity within (1 + ppl_tolerance) of full's (when both were measured).
bool matches_full(const CandidateScore& c, int64_t full_hits, double full_ppl,
                  int64_t miss_tolerance, double ppl_tolerance);
// The choice: the cheapest candidate that matches full (ties: more hits, lower perplexity, fewer
// selection layers, the earlier candidate); when none does, the most accurate (hits, then
// perplexity, then cost). `*matched` says which rule chose. Requires: scores not empty.
size_t choose_candidate(const std::vector<CandidateScore>& scores, int64_t full_hits,
                        double full_ppl, int64_t miss_tolerance, double ppl_tolerance,
                        bool* matched);

// The stream tidal ppl --tokens N --offset O scores, and calibrate --ppl-tokens N (O = 0): BOS,
// then N text tokens from O. Each is predicted from those before it and the last is never fed,
// so the stream's KV cache (the engine's context) holds N positions. Requires O + N <= the
// text's tokens.
std::vector<int32_t> perplexity_stream(int32_t bos, const std::vector<int32_t>& text,
                                       int64_t offset, int64_t tokens);
// A checksum of a stream's tokens, kept in a --resume file's settings to refuse one that scored
// other tokens.
uint64_t token_checksum(const std::vector<int32_t>& ids);

// calibrate's one line on what it measured, printed last and kept as the policy file's
// calibration.summary: its settings (--lengths as given, however long), the choice `pick` over
// `cases` needle cases against `full` and the depth-scaled rule `def` (`def_label`), and
// whether the choice matched full.
std::string calibration_summary(const CalibrateOptions& o, size_t cases, const CandidateScore& pick,
                                const CandidateScore& full, const std::string& def_label,
                                const CandidateScore& def, bool matched);

void add_niah_command(CLI::App& app, NiahOptions* opts);
void add_ppl_command(CLI::App& app, PplOptions* opts);
void add_calibrate_command(CLI::App& app, CalibrateOptions* opts);

Status run_niah(const NiahOptions& opts, const AccuracyDefaults& defaults);
Status run_ppl(const PplOptions& opts, const AccuracyDefaults& defaults);
Status run_calibrate(const CalibrateOptions& opts, const AccuracyDefaults& defaults);

// "1K,4K,16K" -> {1024, 4096, 16384} (K = 1024 here: context lengths); errors name `flag`. A
// value listed twice ("1K,1024") is an error: each value is a row, a column or a policy.
Status parse_length_list(const std::string& text, const char* flag, std::vector<int64_t>* out);
// "0,10,50" -> {0, 10, 50}; "1-4" -> {1, 2, 3, 4}. Errors name `flag`; as above, a value listed
// twice ("0-50,50") is one.
Status parse_int_list(const std::string& text, const char* flag, std::vector<int64_t>* out);
// --depths (niah, calibrate): parse_int_list's list of needle depths, each a percent (0 to 100).
Status parse_depth_list(const std::string& text, std::vector<int64_t>* out);

// The sweep's variants for `config` (validated). Reads the policy file when a layers spec needs it.
// A flag in flags.flags_given that no listed policy reads is an error naming it.
Status build_variants(const VariantFlags& flags, const model::ModelConfig& config,
                      const std::string& model_dir, int64_t page_size, std::vector<Variant>* out);
// A file name for a variant's picture: "niah_tidal_per-query-head_2-4_default_K64.png".
std::string variant_file_name(const std::string& prefix, const Variant& v);

}  // namespace tidal::launch
