// SPDX-License-Identifier: Apache-2.0
// A model's own TidalDecode selection layers (DESIGN.md §4): `tidal calibrate` measures which
// first selection layer and re-selection layers keep a model's accuracy at the least KV cost and
// writes them beside the checkpoint as tidal_policy.json. Every command that builds a `tidal`
// policy for a model takes the file's layers as that model's default (generate, niah, ppl and,
// through --policy-file, bench, which runs presets without a model directory). Flags given on the
// command line win; without a file the depth-scaled rule (layer 2, re-selection at 13/32 of the
// depth) applies.
//
// Hook for `tidal serve` (issue 11): load the file once per model with load_model_policy(), then
// call apply_model_policy() on each request whose tidal layers the client left unset.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/attention_policy.h"
#include "model/config.h"
#include "runtime/status.h"

namespace tidal::launch {

constexpr const char* kPolicyFileName = "tidal_policy.json";

// The layers a policy file holds, and where they came from.
struct ModelPolicy {
  std::string path;  // the file read; empty: none (the depth-scaled rule applies)
  int64_t sparse_start = 2;
  std::vector<int64_t> reselect_layers;  // empty: no re-selection
  std::string summary;  // one line on what calibration measured ("" when the file has none)

  bool found() const { return !path.empty(); }
};

// "3:5" (sparse_start 3, re-selection at 5), "3:5+7", "5:-" (no re-selection).
std::string layers_label(int64_t sparse_start, const std::vector<int64_t>& reselect);

// Reads a policy file. Errors name the file: unreadable, not JSON, sparse_start or
// reselect_layers missing or not non-negative integers.
Status read_policy_file(const std::string& path, ModelPolicy* out);
// <model_dir>/tidal_policy.json when it exists (out->found()), else ok with out->path empty.
Status load_model_policy(const std::string& model_dir, ModelPolicy* out);
// Writes {"sparse_start": S, "reselect_layers": [...], "calibration": <calibration_json>}
// (calibration_json: a JSON object as text; empty: none) through a temporary file and a rename.
Status write_policy_file(const std::string& path, int64_t sparse_start,
                         const std::vector<int64_t>& reselect, const std::string& calibration_json);

// Writes `text` to `path` through a temporary file (`path`.tmp) and a rename, so a reader (or a
// run that is killed) never sees half a file. A failed write or rename is an error naming the
// file and why, and removes the temporary file (`path` is left as it was).
Status write_file_atomic(const std::string& path, const std::string& text);
// Whether write_file_atomic can write `path`, found before the work that makes its text: `path`
// is not a directory, and its temporary file can be made (it is removed again; `path` is left as
// it is). The error says why without the path: "it is a directory", "cannot write it: ...".
Status check_writable(const std::string& path);

// When the file was found and the layers were not set explicitly (`layers_given`: the user gave
// a first selection layer or re-selection layers), a tidal policy takes the file's layers. Then
// checks them against the model, the error naming the file (a file calibrated for another model).
// Other policies and explicit layers are left as they are.
Status apply_model_policy(const ModelPolicy& file, bool layers_given,
                          const model::ModelConfig& config, model::AttentionPolicy* policy);

}  // namespace tidal::launch
