// SPDX-License-Identifier: Apache-2.0
#include "launch/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <utility>

namespace tidal::launch {

Progress::Progress(std::string what, std::string unit, double delay_seconds, std::FILE* out)
    : what_(std::move(what)),
      unit_(std::move(unit)),
      delay_(delay_seconds),
      out_(out),
      terminal_(isatty(fileno(out)) != 0) {
  start(0);
}

void Progress::start(int64_t total) {
  finish();
  total_ = total;
  start_ = last_ = Clock::now();
}

std::string Progress::format(const std::string& what, const std::string& unit, int64_t done,
                             int64_t total, double seconds, bool elapsed) {
  const double rate = seconds > 0 ? double(done) / seconds : 0.0;
  std::string line =
      "tidal: " + what + " " + std::to_string(done) + "/" + std::to_string(total) + " " + unit;
  char buf[96];
  const double percent = total > 0 ? 100.0 * double(done) / double(total) : 100.0;
  std::snprintf(buf, sizeof(buf), " (%.0f%%), %.1f %s/s", std::floor(percent), rate, unit.c_str());
  line += buf;
  if (elapsed) {
    std::snprintf(buf, sizeof(buf), ", %.0f s elapsed", std::floor(seconds));
    line += buf;
  }
  if (rate > 0 && done < total) {
    std::snprintf(buf, sizeof(buf), ", %.0f s left", std::ceil(double(total - done) / rate));
    line += buf;
  }
  return line;
}

void Progress::update(int64_t done) {
  const Clock::time_point now = Clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double since_last = std::chrono::duration<double>(now - last_).count();
  const bool last = done >= total_;
  if (elapsed < delay_) return;
  // Refresh twice a second on a terminal, every 10 s in a log; always show the end.
  if (printed_ && !last && since_last < (terminal_ ? 0.5 : 10.0)) return;
  const std::string line = format(what_, unit_, done, total_, elapsed, elapsed_);
  if (terminal_) {
    std::fprintf(out_, "\r%s%*s", line.c_str(),
                 int(last_width_ > line.size() ? last_width_ - line.size() : 0), "");
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
  last_width_ = line.size();
  printed_ = true;
  last_ = now;
}

void Progress::finish() {
  if (printed_ && terminal_) {
    std::fputc('\n', out_);
    std::fflush(out_);
  }
  printed_ = false;
  last_width_ = 0;
}

}  // namespace tidal::launch
