// SPDX-License-Identifier: Apache-2.0
// Timing for benchmarks: a host timer on steady_clock, a device timer on CUDA events, and
// run_timed(), which warms up and then collects one sample per repetition with either timer.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "runtime/device.h"

namespace tidal::bench {

// Wall-clock timer for work that finishes on the host (the CPU reference path). A device timer
// has the same two members: start() before the work, stop_us() after it, returning microseconds.
class HostTimer {
 public:
  void start() { begin_ = std::chrono::steady_clock::now(); }
  double stop_us() const {
    const auto end = std::chrono::steady_clock::now();
    return std::chrono::duration<double, std::micro>(end - begin_).count();
  }

 private:
  std::chrono::steady_clock::time_point begin_;
};

// Device time of work queued on one stream: an event recorded before the work and one after
// (STYLE.md rule 31), so other streams and host work after the launch do not count. The host's
// launch latency does when the GPU sits idle waiting for it; queue something before start()
// (the L2 flush of RepOptions::between) to hide it. stop_us() waits for the work, so every
// sample is one repetition. Requires a CUDA device.
class CudaEventTimer {
 public:
  explicit CudaEventTimer(Stream stream)
      : stream_(stream), begin_(std::make_unique<Event>()), end_(std::make_unique<Event>()) {}
  void start() { begin_->record(stream_); }
  double stop_us() const {
    end_->record(stream_);
    end_->synchronize();
    return double(end_->elapsed_ms_since(*begin_)) * 1e3;
  }

 private:
  Stream stream_;
  std::unique_ptr<Event> begin_, end_;  // Event is neither copyable nor movable
};

struct RepOptions {
  int warmup = 1;             // untimed calls before sampling; Default: 1
  int reps = 0;               // timed calls; Default (0): as many as fit in budget_ms
  double budget_ms = 1000.0;  // time to spend sampling when reps == 0; Default: 1 s
  int min_reps = 3;           // bounds on the automatic count; Default: 3
  int max_reps = 1000;        // Default: 1000
  // Runs before every sample, outside the timed span (an L2 flush for memory-bound GPU kernels:
  // queued on the bench stream before the start event); may be empty.
  std::function<void()> between;
};

// Calls `fn` warmup times, then returns one sample (microseconds) per timed call.
template <typename Timer = HostTimer, typename Fn>
std::vector<double> run_timed(Fn&& fn, const RepOptions& o, Timer timer = Timer()) {
  double last_us = 0.0;
  for (int i = 0; i < std::max(o.warmup, o.reps > 0 ? 0 : 1); ++i) {
    if (o.between) o.between();
    timer.start();
    fn();
    last_us = timer.stop_us();
  }
  int reps = o.reps;
  if (reps <= 0) {  // size the run from the last warm-up call
    const double fit = o.budget_ms * 1e3 / std::max(last_us, 1e-3);
    reps = int(std::clamp(fit, double(o.min_reps), double(o.max_reps)));
  }
  std::vector<double> samples;
  samples.reserve(size_t(reps));
  for (int i = 0; i < reps; ++i) {
    if (o.between) o.between();
    timer.start();
    fn();
    samples.push_back(timer.stop_us());
  }
  return samples;
}

}  // namespace tidal::bench
