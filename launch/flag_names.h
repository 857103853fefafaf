// SPDX-License-Identifier: Apache-2.0
// Library errors name the setting by its field ("top_p must be in (0, 1]", "page_size ..."); the
// command's user set it with a flag. One table, kept beside the flag definitions, turns each
// field name in a message into its flag ("--top-p must be in (0, 1]").
#pragma once

#include <string>

#include "runtime/status.h"

namespace tidal::launch {

// Replaces every whole-word field name (a word not already part of a flag) with its flag.
std::string name_flags(const std::string& message);
Status name_flags(const Status& status);

}  // namespace tidal::launch
