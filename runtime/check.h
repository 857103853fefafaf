// SPDX-License-Identifier: Apache-2.0
// Fatal checks for bugs (never for bad input, which is a Status). Prints the expression,
// file:line, rank and detail, then aborts.
#pragma once

#include <string>

namespace tidal {

[[noreturn]] void fatal(const char* file, int line, const char* expr, const std::string& detail);

// The rank printed by fatal(); set once by launch/ when running under MPI. Default: -1 (none).
void set_log_rank(int rank);
int log_rank();

}  // namespace tidal

#define TIDAL_CHECK(cond, detail)                                     \
  do {                                                                \
    if (!(cond)) ::tidal::fatal(__FILE__, __LINE__, #cond, (detail)); \
  } while (0)
