// SPDX-License-Identifier: Apache-2.0
#include "runtime/status.h"

#include "runtime/utf8.h"

namespace tidal {
namespace {

const char* code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid argument";
    case StatusCode::kNotFound: return "not found";
    case StatusCode::kOutOfRange: return "out of range";
    case StatusCode::kOutOfMemory: return "out of memory";
    case StatusCode::kUnavailable: return "unavailable";
    case StatusCode::kInternal: return "internal";
    case StatusCode::kAlreadyExists: return "already exists";
  }
  return "unknown";
}

}  // namespace

std::string Status::to_string() const {
  if (ok()) return "ok";
  return std::string(code_name(code_)) + ": " + message_;
}

std::string printable(const std::string& s, size_t max_len) {
  std::string r;
  size_t i = 0;
  while (i < s.size()) {
    // A byte that begins no valid UTF-8 character is one '?'; a character is kept or cut whole,
    // so the result is valid UTF-8 (for a gRPC status, a JSON log line, a terminal).
    const size_t valid = valid_utf8_at(s, i);
    const auto b0 = static_cast<unsigned char>(s[i]);
    const bool c1 = valid == 2 && b0 == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0;
    const bool keep = valid > 0 && b0 >= 0x20 && b0 != 0x7f && !c1;
    const size_t width = keep ? valid : 1;
    if (r.size() + width > max_len) {
      r += "...";
      break;
    }
    if (keep) {
      r.append(s, i, valid);
    } else {
      r += '?';
    }
    i += valid > 0 ? valid : 1;
  }
  return r;
}

Status Status::with_context(const std::string& prefix) const {
  if (ok()) return *this;
  return Status(code_, prefix + ": " + message_);
}

}  // namespace tidal
