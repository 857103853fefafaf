// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/stop_strings.h"

#include <algorithm>

namespace tidal::engine {

bool StopStringMatcher::feed(const std::string& text, std::string* emit) {
  if (stopped_) return true;
  pending_ += text;
  size_t first = std::string::npos;
  for (const std::string& s : stops_) {
    if (!s.empty()) first = std::min(first, pending_.find(s));
  }
  if (first != std::string::npos) {
    emit->append(pending_, 0, first);
    pending_.clear();
    stopped_ = true;
    return true;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    for (size_t len = std::min(s.size() - (s.empty() ? 0 : 1), pending_.size()); len > hold;
         --len) {
      if (pending_.compare(pending_.size() - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  emit->append(pending_, 0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return false;
}

void StopStringMatcher::flush(std::string* emit) {
  if (!stopped_) emit->append(pending_);
  pending_.clear();
}

}  // namespace tidal::engine
