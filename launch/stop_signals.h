// SPDX-License-Identifier: Apache-2.0
// `tidal serve`'s SIGINT and SIGTERM, from before the model loads to the process's end: blocked
// in every thread (those started later inherit the mask, so no thread is interrupted mid-step)
// and taken by one thread of their own. While the model loads a signal stops the process at
// once: there is nothing to drain. From serving() on, they are held for serve's shutdown.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tidal::launch {

class StopSignals {
 public:
  // Blocks SIGINT and SIGTERM and starts the thread that takes them: before any other thread
  // starts (the CPU path's pool, MPI's, gRPC's).
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // Until this call a signal ends the process: one line ("tidal: SIGINT: stopped while loading;
  // not serving"), then the signal's own default action, so a shell sees 128 + its number. From
  // here on signals are held: call it just before the server starts (or a rank serves steps).
  void serving();
  // The first signal held since serving() (SIGINT or SIGTERM), waited for.
  int wait();
  // `f` runs for each later signal (one held already, not taken by wait(), runs it at once) until
  // `f` is cleared with nullptr; once that returns, `f` runs no more.
  void on_signal(std::function<void()> f);

 private:
  void take();  // the signals' thread

  std::mutex mu_;
  std::condition_variable cv_;
  bool serving_ = false;
  bool closing_ = false;
  std::vector<int> held_;  // signals since serving() not yet taken by wait() or `on_signal_`
  std::function<void()> on_signal_;
  std::thread runner_;
};

}  // namespace tidal::launch
