// SPDX-License-Identifier: Apache-2.0
// Reading whole files into memory, with one-line errors that name the path.
#pragma once

#include <string>

#include "runtime/status.h"

namespace tidal {

// Reads `path` into `out`. kNotFound when it does not exist; kInvalidArgument when it is a
// directory or cannot be read.
Status read_file(const std::string& path, std::string* out);

}  // namespace tidal
