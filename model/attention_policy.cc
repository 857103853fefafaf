// SPDX-License-Identifier: Apache-2.0
#include "model/attention_policy.h"

#include <algorithm>
#include <cmath>

namespace tidal::model {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

}  // namespace

std::vector<int64_t> default_reselect_layers(int64_t num_layers, int64_t sparse_start) {
  // TidalDecode re-selects at layer 13 of 32 (reference/TIDALDECODE.md §1.1); other depths take
  // the layer at the same relative depth.
  const auto layer = int64_t(std::lround(13.0 * double(num_layers) / 32.0));
  if (layer <= sparse_start || layer >= num_layers) return {};
  return {layer};
}

std::vector<int64_t> reselect_layers(const AttentionPolicy& policy, const ModelConfig& config) {
  std::vector<int64_t> layers =
      policy.tidal.reselect_layers
          ? *policy.tidal.reselect_layers
          : default_reselect_layers(config.num_layers, policy.tidal.sparse_start);
  std::sort(layers.begin(), layers.end());
  layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
  return layers;
}

Status AttentionPolicy::validate(const ModelConfig& config, int64_t kv_page_size) const {
  if (correction_interval < 0) {
    return invalid_argument("correction_interval must be >= 0 (0: off), got " +
                            str(correction_interval));
  }
  const int64_t layers = config.num_layers;
  switch (kind) {
    case AttentionKind::kFull: return ok_status();
    case AttentionKind::kTidal: {
      if (tidal.budget < 2) {
        return invalid_argument(
            "tidal budget must be >= 2 (the current token and at least one "
            "selected), got " +
            str(tidal.budget));
      }
      if (tidal.sparse_start < 0 || tidal.sparse_start >= layers) {
        return invalid_argument("sparse_start " + str(tidal.sparse_start) + " is outside the " +
                                str(layers) + " layers");
      }
      for (int64_t r : reselect_layers(*this, config)) {
        if (r < 0 || r >= layers) {
          return invalid_argument("reselect_layers: layer " + str(r) + " is outside the " +
                                  str(layers) + " layers");
        }
        if (r <= tidal.sparse_start) {
          return invalid_argument("reselect_layers: layer " + str(r) +
                                  " must be above sparse_start " + str(tidal.sparse_start));
        }
      }
      return ok_status();
    }
    case AttentionKind::kQuest: {
      if (quest.page_size != kv_page_size) {
        return invalid_argument("quest page size " + str(quest.page_size) +
                                " must equal the KV cache page size " + str(kv_page_size));
      }
      if (quest.budget < quest.page_size) {
        return invalid_argument("quest budget " + str(quest.budget) + " is below one page of " +
                                str(quest.page_size) + " tokens");
      }
      if (quest.dense_layers < 0 || quest.dense_layers > layers) {
        return invalid_argument("quest dense_layers " + str(quest.dense_layers) +
                                " is outside 0.." + str(layers));
      }
      return ok_status();
    }
  }
  return invalid_argument("unknown attention kind");
}

LayerRole layer_role(const AttentionPolicy& policy, const std::vector<int64_t>& reselect,
                     int64_t layer) {
  switch (policy.kind) {
    case AttentionKind::kFull: return LayerRole::kDense;
    case AttentionKind::kTidal:
      if (layer < policy.tidal.sparse_start) return LayerRole::kDense;
      if (layer == policy.tidal.sparse_start ||
          std::find(reselect.begin(), reselect.end(), layer) != reselect.end()) {
        return LayerRole::kSelect;
      }
      return LayerRole::kSparse;
    case AttentionKind::kQuest:
      return layer < policy.quest.dense_layers ? LayerRole::kDense : LayerRole::kQuest;
  }
  return LayerRole::kDense;
}

int64_t num_lists(Granularity granularity, const ModelConfig& config) {
  switch (granularity) {
    case Granularity::kPerQueryHead: return config.num_heads;
    case Granularity::kPerKvHead: return config.num_kv_heads;
    case Granularity::kShared: return 1;
  }
  return config.num_heads;
}

const char* layer_role_name(LayerRole role) {
  switch (role) {
    case LayerRole::kDense: return "dense";
    case LayerRole::kSelect: return "select";
    case LayerRole::kSparse: return "sparse";
    case LayerRole::kQuest: return "quest";
  }
  return "unknown";
}

Status parse_attention_kind(const std::string& name, AttentionKind* out) {
  if (name == "full")
    *out = AttentionKind::kFull;
  else if (name == "tidal")
    *out = AttentionKind::kTidal;
  else if (name == "quest")
    *out = AttentionKind::kQuest;
  else
    return invalid_argument("unknown attention '" + printable(name, 40) +
                            "' (known: full, tidal, quest)");
  return ok_status();
}

Status parse_granularity(const std::string& name, Granularity* out) {
  if (name == "per-query-head" || name == "per_query_head")
    *out = Granularity::kPerQueryHead;
  else if (name == "per-kv-head" || name == "per_kv_head")
    *out = Granularity::kPerKvHead;
  else if (name == "shared")
    *out = Granularity::kShared;
  else
    return invalid_argument("unknown granularity '" + printable(name, 40) +
                            "' (known: per-query-head, per-kv-head, shared)");
  return ok_status();
}

Status parse_agreement(const std::string& name, Agreement* out) {
  if (name == "approx")
    *out = Agreement::kApprox;
  else if (name == "exact")
    *out = Agreement::kExact;
  else
    return invalid_argument("unknown agreement '" + printable(name, 40) +
                            "' (known: approx, exact)");
  return ok_status();
}

const char* agreement_name(Agreement agreement) {
  return agreement == Agreement::kExact ? "exact" : "approx";
}

const char* attention_kind_name(AttentionKind kind) {
  switch (kind) {
    case AttentionKind::kFull: return "full";
    case AttentionKind::kTidal: return "tidal";
    case AttentionKind::kQuest: return "quest";
  }
  return "unknown";
}

const char* granularity_name(Granularity granularity) {
  switch (granularity) {
    case Granularity::kPerQueryHead: return "per-query-head";
    case Granularity::kPerKvHead: return "per-kv-head";
    case Granularity::kShared: return "shared";
  }
  return "unknown";
}

}  // namespace tidal::model
