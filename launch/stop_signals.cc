// SPDX-License-Identifier: Apache-2.0
#include "launch/stop_signals.h"

#include <pthread.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>

namespace tidal::launch {
namespace {

sigset_t stop_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

// One line, then the signal's default action (termination) in this thread, where it is the one
// signal unblocked: the process ends as if it had never blocked it.
[[noreturn]] void stop_now(int sig) {
  std::fprintf(stderr, "tidal: %s: stopped while loading; not serving\n",
               sig == SIGINT ? "SIGINT" : "SIGTERM");
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, nullptr);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
  pthread_kill(pthread_self(), sig);
  _exit(128 + sig);  // not reached: the signal ends the process first
}

}  // namespace

StopSignals::StopSignals() {
  const sigset_t set = stop_set();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  runner_ = std::thread([this] { take(); });
}

StopSignals::~StopSignals() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
  }
  pthread_kill(runner_.native_handle(), SIGTERM);  // wakes its sigwait; taken as closing
  runner_.join();
}

void StopSignals::take() {
  const sigset_t set = stop_set();
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_) return;
    if (!serving_) stop_now(sig);
    if (on_signal_) {
      on_signal_();
    } else {
      held_.push_back(sig);
      cv_.notify_all();
    }
  }
}

void StopSignals::serving() {
  std::lock_guard<std::mutex> lock(mu_);
  serving_ = true;
}

int StopSignals::wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return !held_.empty(); });
  const int sig = held_.front();
  held_.erase(held_.begin());
  return sig;
}

void StopSignals::on_signal(std::function<void()> f) {
  std::lock_guard<std::mutex> lock(mu_);
  on_signal_ = std::move(f);
  if (on_signal_ && !held_.empty()) {
    held_.clear();
    on_signal_();
  }
}

}  // namespace tidal::launch
