// SPDX-License-Identifier: Apache-2.0
// The coordinator's scheduler (DESIGN.md §3, §4): continuous batching over one engine. Requests
// are submitted from any thread; one thread steps. Each step:
//   1. cancelled requests (a client's cancel or disconnect) are released: their KV pages return
//      before anything else is planned;
//   2. queued requests are admitted in order while a sequence slot and KV pages allow;
//   3. one engine step (Engine::step) runs the next decode token of every running request, the
//      correction chunks due (every correction_interval decode steps of a request, its last N
//      tokens run densely; the request decodes in the step of its pass's last chunk), and the
//      next prefill chunk of requests being admitted, within prefill_chunk tokens: a long prompt
//      is prefilled a chunk per step while the running streams keep getting a token each step;
//   4. every sampled token goes through its request's state machine (request.h) and out through
//      its callback; finished requests release their KV pages.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "runtime/engine/engine.h"
#include "runtime/engine/generate.h"
#include "runtime/engine/request.h"

namespace tidal::engine {

struct SchedulerOptions {
  // How requests are admitted against the KV cache:
  // - kReserve (the service's): a request is admitted when the pages its whole generation may
  //   hold (prompt + max_new_tokens - 1 tokens, within the context and the capacity) are not
  //   promised to running requests. A running request then never finds the cache full because of
  //   another, so its output never depends on the load.
  // - kOnDemand (generate()'s): admitted when its prompt's pages are free; a running request
  //   that finds no page for its next token ends with kKvCapacity.
  enum class Admission { kReserve, kOnDemand };
  Admission admission = Admission::kReserve;
  int64_t max_queue = 4096;  // live requests (queued or running) at most; more are refused
  double rate_window_seconds = 10;  // SchedulerStats::tokens_per_second is over this much time
};

// A snapshot of the scheduler, taken after every step.
struct SchedulerStats {
  int64_t queued = 0;    // submitted, not admitted
  int64_t running = 0;   // admitted (prefilling or decoding)
  int64_t finished = 0;  // ended with a finish reason (not cancelled)
  int64_t cancelled = 0;
  int64_t failed = 0;         // ended with an error
  int64_t prompt_tokens = 0;  // of admitted requests
  int64_t generated_tokens = 0;
  int64_t steps = 0;
  int64_t mixed_steps = 0;  // steps holding decode tokens and prefill / correction chunks
  int64_t correction_passes = 0;
  int64_t correction_tokens = 0;
  int64_t kv_pages_total = 0;
  int64_t kv_pages_used = 0;      // held by live sequences
  int64_t kv_pages_reserved = 0;  // promised to running requests (kReserve)
  int64_t page_size = 0;
  double tokens_per_second = 0;  // generated, over the last rate_window_seconds
};

using RequestHandle = uint64_t;

// A wait of `seconds` for condition_variable::wait_for: past ~31 years (inf included) clamped
// to that, which is "until done" (wait_for converts to the clock's int64 nanoseconds, so inf or
// 1e10 s would overflow and end the wait at once); NaN or <= 0: no wait.
inline std::chrono::duration<double> bounded_wait(double seconds) {
  constexpr double kMaxWaitSeconds = 1e9;
  return std::chrono::duration<double>(seconds > 0 ? std::min(seconds, kMaxWaitSeconds) : 0.0);
}

class Scheduler {
 public:
  Scheduler(Engine& engine, const model::Tokenizer* tokenizer,
            SchedulerOptions options = SchedulerOptions());
  // Stops the stepping thread and releases every live sequence (no more events).
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Any thread. Checks the request (its settings and prompt, as Engine::validate_sequence: a
  // prompt longer than the KV capacity, which can never fit, is kOutOfMemory), refuses a `name`
  // that a live request holds (kAlreadyExists; empty: no name) and, once stop_admitting() was
  // called or the queue is full, everything (kUnavailable); then queues it. `on_event` is called
  // on the stepping thread: once per token (returning false cancels the request), then once
  // with `finished` set.
  Status submit(GenerationRequest request, const std::string& name, GenerationCallback on_event,
                RequestHandle* handle);
  // Any thread. Ends a live request at the next step boundary, before anything else is planned
  // (its KV pages return then): its finished event has finish kCancelled and status `why`.
  // False when no live request has that name (or handle).
  bool cancel(const std::string& name, const Status& why = Status());
  bool cancel(RequestHandle handle, const Status& why = Status());
  // Cancels every live request with `why`.
  void cancel_all(const Status& why);
  // From now on submit refuses (kUnavailable, "the server is shutting down").
  void stop_admitting();

  // The stepping thread: one scheduling round (cancellations, admission, one engine step,
  // events). Returns false when there was nothing to do. For a caller that steps itself
  // (generate()); not while start()'s thread runs.
  bool step();
  // Runs step() on a thread of its own, which sleeps while there is nothing to do, until stop().
  void start();
  void stop();
  // Blocks until no request is live (queued or running) or `seconds` pass; true when idle.
  // `seconds` past ~31 years (inf included) wait until idle; NaN or <= 0 does not wait.
  bool wait_idle(double seconds);

  SchedulerStats stats() const;  // any thread
  const Engine& engine() const { return engine_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry;
  struct Cancel {
    RequestHandle handle;
    Status why;
  };

  void take_inbox();
  void reap_cancelled();
  void admit();
  // Plans and runs one engine step; false when nothing could run.
  bool run_step();
  // Delivers a sampled token to `e` and finishes it when it ends; false when it ended.
  bool deliver(Entry& e, int32_t token);
  // Ends `e`: the finished event, its pages released, counters updated.
  void finish(Entry& e, FinishReason reason, const Status& status = Status());
  void remove_done();
  // stats_ from the counters and the live requests (mu_ held).
  void snapshot_locked();
  // Adds the round's tokens to the rate window and takes the snapshot.
  void publish(int64_t tokens);
  int64_t pages_for(int64_t tokens) const;

  Engine& engine_;
  const model::Tokenizer* tokenizer_;
  SchedulerOptions options_;

  // Shared with other threads (under mu_).
  mutable std::mutex mu_;
  std::condition_variable wake_;  // work arrived (or stop)
  std::condition_variable idle_;  // a request ended
  std::vector<std::unique_ptr<Entry>> inbox_;
  std::vector<Cancel> cancels_;
  std::unordered_map<std::string, RequestHandle> names_;  // live named requests
  // Every submitted request until its finished event has returned (wait_idle waits for none):
  // true while it has not ended, false while its end is being delivered. A client may send its
  // next request as soon as it has seen the end, so only the true ones count against max_queue.
  std::unordered_map<RequestHandle, bool> live_;
  int64_t unended_ = 0;  // live_ entries that are true
  RequestHandle next_handle_ = 1;
  bool admitting_ = true;
  bool stopping_ = false;
  bool busy_ = false;  // the stepping thread holds queued or running requests
  SchedulerStats stats_;
  std::thread thread_;

  // The stepping thread's own.
  std::deque<std::unique_ptr<Entry>> queue_;
  std::vector<std::unique_ptr<Entry>> running_;  // in admission order
  int64_t reserved_pages_ = 0;
  bool prefill_waited_ = false;  // the first prefill chunk found no room in the last step
  std::vector<SeqId> ids_;
  std::vector<int32_t> tokens_, sampled_;
  std::vector<StepChunk> chunks_;
  std::vector<Entry*> decoding_, chunked_;
  std::deque<std::pair<Clock::time_point, int64_t>> window_;  // (step end, tokens) for tokens/s
  Clock::time_point start_time_;
  int64_t step_tokens_ = 0;  // tokens delivered in the current round
  SchedulerStats counters_;  // cumulative counts
};

}  // namespace tidal::engine
