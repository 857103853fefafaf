// SPDX-License-Identifier: Apache-2.0
// Recoverable errors caused by inputs (bad request, missing file, no memory). Bugs and device
// failures are not Status: they abort through check.h. LevelDB-style value type.
#pragma once

#include <string>
#include <utility>

namespace tidal {

enum class StatusCode {
  kOk,
  kInvalidArgument,
  kNotFound,
  kOutOfRange,
  kOutOfMemory,
  kUnavailable,
  kInternal,
  kAlreadyExists,  // e.g. a request id that a live request already holds
};

class Status {
 public:
  Status() = default;  // ok
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid argument: <message>", or "ok".
  std::string to_string() const;

  // Returns a copy whose message is "<prefix>: <message>" (adds context while propagating).
  Status with_context(const std::string& prefix) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// `s` made fit for a one-line message: control characters (C0, DEL, C1) and bytes that begin no
// valid UTF-8 character become '?', and at most `max_len` bytes are kept, whole characters only
// ("..." marks a cut): valid UTF-8 whatever `s` holds. For names and text that come from files.
std::string printable(const std::string& s, size_t max_len = 120);

inline Status ok_status() { return Status(); }
inline Status invalid_argument(std::string msg) {
  return Status(StatusCode::kInvalidArgument, std::move(msg));
}
inline Status not_found(std::string msg) { return Status(StatusCode::kNotFound, std::move(msg)); }
inline Status out_of_range(std::string msg) {
  return Status(StatusCode::kOutOfRange, std::move(msg));
}
inline Status out_of_memory(std::string msg) {
  return Status(StatusCode::kOutOfMemory, std::move(msg));
}
inline Status unavailable(std::string msg) {
  return Status(StatusCode::kUnavailable, std::move(msg));
}
inline Status already_exists(std::string msg) {
  return Status(StatusCode::kAlreadyExists, std::move(msg));
}
inline Status internal_error(std::string msg) {
  return Status(StatusCode::kInternal, std::move(msg));
}

}  // namespace tidal

#define TIDAL_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::tidal::Status tidal_status_ = (expr);        \
    if (!tidal_status_.ok()) return tidal_status_; \
  } while (0)
