// SPDX-License-Identifier: Apache-2.0
#include "runtime/status.h"

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
  for (char c : s) {
    if (r.size() >= max_len) {
      r += "...";
      break;
    }
    const auto u = static_cast<unsigned char>(c);
    r += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  return r;
}

Status Status::with_context(const std::string& prefix) const {
  if (ok()) return *this;
  return Status(code_, prefix + ": " + message_);
}

}  // namespace tidal
