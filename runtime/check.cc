// SPDX-License-Identifier: Apache-2.0
#include "runtime/check.h"

#include <cstdio>
#include <cstdlib>

namespace tidal {
namespace {
int g_rank = -1;
}  // namespace

void set_log_rank(int rank) { g_rank = rank; }
int log_rank() { return g_rank; }

void fatal(const char* file, int line, const char* expr, const std::string& detail) {
  if (g_rank >= 0) {
    std::fprintf(stderr, "[rank %d] tidal: fatal: %s:%d: check failed: %s: %s\n", g_rank, file,
                 line, expr, detail.c_str());
  } else {
    std::fprintf(stderr, "tidal: fatal: %s:%d: check failed: %s: %s\n", file, line, expr,
                 detail.c_str());
  }
  std::fflush(stderr);
  std::abort();
}

}  // namespace tidal
