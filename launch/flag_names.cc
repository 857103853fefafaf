// SPDX-License-Identifier: Apache-2.0
#include "launch/flag_names.h"

#include <cctype>
#include <utility>

namespace tidal::launch {
namespace {

// Field (EngineConfig, SamplingParams, StopConditions, AttentionPolicy) -> flag.
const std::pair<const char*, const char*> kFlags[] = {
    {"page_size", "--page-size"},
    {"max_batch", "--max-batch"},
    {"max_context", "--max-context"},
    {"kv_capacity", "--kv-capacity"},
    {"prefill_chunk", "--prefill-chunk"},
    {"kv_dtype", "--kv-dtype"},
    {"temperature", "--temperature"},
    {"top_k", "--top-k"},
    {"top_p", "--top-p"},
    {"min_p", "--min-p"},
    {"max_new_tokens", "--max-new-tokens"},
    {"stop_strings", "--stop"},
    {"budget", "--budget"},
    {"sparse_start", "--sparse-start"},
    {"reselect_layers", "--reselect-layers"},
    {"granularity", "--granularity"},
    {"correction_interval", "--correction-interval"},
};

// Letters, digits, '_' and '-' continue a name: "max_budget" is not "budget", "--top-p" stays.
bool name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-';
}

}  // namespace

std::string name_flags(const std::string& message) {
  std::string out;
  size_t i = 0;
  while (i < message.size()) {
    bool replaced = false;
    if (!name_char(message[i]) || (i > 0 && name_char(message[i - 1]))) {
      out += message[i++];
      continue;
    }
    for (const auto& [field, flag] : kFlags) {
      const std::string f = field;
      if (message.compare(i, f.size(), f) == 0 &&
          (i + f.size() == message.size() || !name_char(message[i + f.size()]))) {
        out += flag;
        i += f.size();
        replaced = true;
        break;
      }
    }
    if (!replaced) {
      // Copy the whole word: a field name inside it is not a field.
      while (i < message.size() && name_char(message[i])) out += message[i++];
    }
  }
  return out;
}

Status name_flags(const Status& status) {
  if (status.ok()) return status;
  return Status(status.code(), name_flags(status.message()));
}

}  // namespace tidal::launch
