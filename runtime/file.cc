// SPDX-License-Identifier: Apache-2.0
#include "runtime/file.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace tidal {

Status read_file(const std::string& path, std::string* out) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return invalid_argument(path + ": is a directory, not a file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string reason = std::string("cannot open: ") + (err ? std::strerror(err) : "?");
    if (err == ENOENT) return not_found(path + ": " + reason);
    return invalid_argument(path + ": " + reason);
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return invalid_argument(path + ": read failed");
  *out = buffer.str();
  return ok_status();
}

}  // namespace tidal
