// SPDX-License-Identifier: Apache-2.0
// Stop strings over streamed text: text is released only once it cannot be the start of a stop
// string, and generation ends at the first complete match (the match itself is not emitted).
#pragma once

#include <string>
#include <vector>

namespace tidal::engine {

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  // Adds `text`; appends what is safe to show to `emit`. Returns true once a stop string has
  // appeared (everything before it has then been emitted, nothing after).
  bool feed(const std::string& text, std::string* emit);
  // Appends the held-back tail (no stop string came) to `emit`.
  void flush(std::string* emit);

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace tidal::engine
