// SPDX-License-Identifier: Apache-2.0
// A plain fork-join loop over the host's cores, for what a benchmark does around its kernels:
// filling gigabytes of deterministic random inputs and running the single-threaded ref:: oracles
// on independent pieces (rows, heads) of a huge case, so validating stays quick.
#pragma once

#include <cstdint>
#include <functional>

namespace tidal::bench {

// Calls fn(i) once for every i in [0, n), spread over up to hardware_concurrency threads, and
// returns when all are done. fn must be safe to call concurrently for different i.
void parallel_for(int64_t n, const std::function<void(int64_t)>& fn);

// Sum of fn(i) over i in [0, n), computed as parallel_for does (e.g. wrong elements per piece).
int64_t parallel_sum(int64_t n, const std::function<int64_t(int64_t)>& fn);

}  // namespace tidal::bench
