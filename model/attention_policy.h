// SPDX-License-Identifier: Apache-2.0
// Per-request attention policies (reference/TIDALDECODE.md §1, §2, §5; DESIGN.md §4): `full`,
// TidalDecode's position persistent sparse attention (`tidal`), the Quest baseline (`quest`),
// and KV cache correction. The policy decides each layer's role in a decode step; prefill is
// dense in every layer whatever the policy.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/config.h"
#include "runtime/status.h"

namespace tidal::model {

enum class AttentionKind { kFull, kTidal, kQuest };

// Who shares a selected list: each query head (the paper's), each KV head (from the group's
// summed probabilities: G times fewer gathered rows under GQA), or every head (LessIsMore).
enum class Granularity { kPerQueryHead, kPerKvHead, kShared };

// How tensor-parallel ranks, each holding some of a list's heads (shared lists; per-KV-head lists
// of a KV head replicated over ranks), agree on it (DESIGN.md §6): each takes a local top-k of
// its heads' summed scores and the candidates are all-gathered and merged (approx), or the summed
// score vectors are all-reduced first (exact: the lists of one rank, to rounding).
enum class Agreement { kApprox, kExact };

struct TidalParams {
  int64_t budget = 256;      // K: tokens each list attends in sparse layers, the current included
  int64_t sparse_start = 2;  // layers below are dense; this layer is the first selection layer
  // Re-selection layers. Default (nullopt): {13} for 32 layers, else the layer nearest 13/32 of
  // the depth when it is above sparse_start, else none. An empty list: no re-selection.
  std::optional<std::vector<int64_t>> reselect_layers;
  Granularity granularity = Granularity::kPerQueryHead;
  Agreement agreement = Agreement::kApprox;  // only used when a list's heads span ranks
};

struct QuestParams {
  int64_t budget = 256;      // tokens per head: budget / page_size pages, the current included
  int64_t page_size = 16;    // must equal the KV cache page size (the metadata pages are its)
  int64_t dense_layers = 2;  // layers below are dense
};

struct AttentionPolicy {
  AttentionKind kind = AttentionKind::kFull;  // Default: full
  TidalParams tidal;                          // used when kind == kTidal
  QuestParams quest;                          // used when kind == kQuest
  int64_t correction_interval = 0;  // every N decode steps re-run the last N tokens densely; 0 off

  // Errors name the setting: budget < 2, sparse_start or a reselect layer out of range, a
  // reselect layer not above sparse_start, a Quest budget below one page, a Quest page size
  // other than the KV cache's, a negative correction interval.
  Status validate(const ModelConfig& config, int64_t kv_page_size) const;
};

std::vector<int64_t> default_reselect_layers(int64_t num_layers, int64_t sparse_start);
// The re-selection layers in effect (the default resolved), ascending.
std::vector<int64_t> reselect_layers(const AttentionPolicy& policy, const ModelConfig& config);

enum class LayerRole {
  kDense,   // dense attention over every cached position
  kSelect,  // dense attention, and its logits pick the lists that later sparse layers use
  kSparse,  // gather attention over the lists of the most recent selection layer
  kQuest,   // Quest: page bounds -> page top-k -> gather over the chosen pages
};
const char* layer_role_name(LayerRole role);

// The role of `layer` in a decode step under `policy` (`reselect` from reselect_layers()).
LayerRole layer_role(const AttentionPolicy& policy, const std::vector<int64_t>& reselect,
                     int64_t layer);

// Lists per token for tidal selection: num_heads, num_kv_heads or 1.
int64_t num_lists(Granularity granularity, const ModelConfig& config);

Status parse_attention_kind(const std::string& name, AttentionKind* out);
Status parse_granularity(const std::string& name, Granularity* out);  // per-query-head, ...
Status parse_agreement(const std::string& name, Agreement* out);      // approx, exact
const char* attention_kind_name(AttentionKind kind);
const char* granularity_name(Granularity granularity);
const char* agreement_name(Agreement agreement);

// What a request's attention did, summed over its decode steps.
struct AttentionStats {
  int64_t decode_steps = 0;
  // KV rows read (one row = one position of one KV head, K and V) and layer-steps, per role.
  int64_t rows[4] = {};             // indexed by LayerRole
  int64_t layer_steps[4] = {};      // indexed by LayerRole
  int64_t quest_metadata_rows = 0;  // page bounds read by Quest estimates (min and max: 2 rows)
  // Position persistence: for consecutive selection layers of one step, the earlier layer's list
  // positions that the later layer's list keeps, and all of the earlier layer's list positions,
  // summed over lists and steps (counted on the device by kernels::commit_selection).
  int64_t overlap_kept = 0;
  int64_t overlap_total = 0;
  int64_t correction_passes = 0;
  int64_t correction_tokens = 0;  // tokens recomputed densely over all passes

  double overlap_percent() const {
    return overlap_total ? 100.0 * double(overlap_kept) / double(overlap_total) : 0.0;
  }
};

}  // namespace tidal::model
