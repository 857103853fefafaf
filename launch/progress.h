// SPDX-License-Identifier: Apache-2.0
// A progress line on stderr for long work (a prefill: tokens done of total, tokens/s, time
// left). Silent for the first `delay` seconds, so short runs print nothing; then refreshed at
// most twice a second, in place on a terminal and as a new line every 10 s otherwise (so logs
// stay readable). finish() ends the line.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace tidal::launch {

class Progress {
 public:
  // `what`: "prefill"; `unit`: "tokens".
  Progress(std::string what, std::string unit, double delay_seconds = 1.5, std::FILE* out = stderr);
  ~Progress() { finish(); }
  // Restarts the clock (a new piece of work of `total` units).
  void start(int64_t total);
  void update(int64_t done);
  // Ends the line (when one was printed).
  void finish();

  // Long sweeps (tidal niah / ppl / calibrate) also show the time elapsed.
  void show_elapsed(bool on) { elapsed_ = on; }

  // "tidal: prefill 2048/8192 tokens (25%), 153.2 tokens/s, 40 s left"; with `elapsed`:
  // "tidal: niah 20/80 runs (25%), 2.0 runs/s, 10 s elapsed, 30 s left".
  static std::string format(const std::string& what, const std::string& unit, int64_t done,
                            int64_t total, double seconds, bool elapsed = false);

 private:
  using Clock = std::chrono::steady_clock;
  std::string what_, unit_;
  double delay_;
  std::FILE* out_;
  bool terminal_;
  int64_t total_ = 0;
  Clock::time_point start_, last_;
  bool printed_ = false;
  bool elapsed_ = false;
  size_t last_width_ = 0;
};

}  // namespace tidal::launch
