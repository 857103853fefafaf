// SPDX-License-Identifier: Apache-2.0
// The CPU path's threads: one process-wide pool that splits a range of independent work items
// (output features of a linear, (token, head) rows of attention) over the machine's cores. An
// item is always computed by the same code whichever thread takes it, and no two items share an
// output, so results are bit-identical for every thread count.
#pragma once

#include <cstdint>
#include <functional>

namespace tidal {

// The threads the CPU path uses, the calling thread included. launch/ sets it from --threads.
// n <= 0 restores the default: the machine's cores (std::thread::hardware_concurrency()).
// Requires: no parallel_for is running.
void set_cpu_threads(int n);
int cpu_threads();
int default_cpu_threads();

// Calls fn(begin, end) on disjoint ranges that cover [0, n), from up to cpu_threads() threads,
// and returns when every call has returned. A range holds at least `grain` items (the last may
// hold fewer); with one thread, or n <= grain, it is one inline call fn(0, n). A parallel_for
// made from inside fn runs inline on the calling thread. Callers on several threads take turns.
// fn must not throw.
void parallel_for(int64_t n, int64_t grain,
                  const std::function<void(int64_t begin, int64_t end)>& fn);

}  // namespace tidal
