// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/scheduler.h"

#include <algorithm>

#include "runtime/size_math.h"

namespace tidal::engine {
namespace {

double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

struct Scheduler::Entry {
  RequestHandle handle = 0;
  std::string name;
  GenerationCallback on_event;
  std::unique_ptr<RequestState> state;
  SeqId seq = -1;
  bool admitted = false;
  int64_t reserved = 0;                 // KV pages promised to it (kReserve)
  int64_t prompt_done = 0;              // prompt positions prefilled
  bool decoding = false;                // prefilled: it has a sampled token to feed
  int32_t next = -1;                    // that token
  int64_t since_correction = 0;         // decode steps since its last correction pass
  int64_t corr_next = 0, corr_end = 0;  // the pass due: positions [corr_next, corr_end)
  bool cancelled = false;
  Status cancel_status;
  bool done = false;
  Clock::time_point submitted, prefill_start;
  bool prefill_started = false;

  bool correcting() const { return corr_next < corr_end; }
  int64_t prompt_size() const { return int64_t(state->request().prompt.size()); }
};

Scheduler::Scheduler(Engine& engine, const model::Tokenizer* tokenizer, SchedulerOptions options)
    : engine_(engine), tokenizer_(tokenizer), options_(options) {
  const MemoryPlan& plan = engine_.memory_plan();
  stats_.page_size = engine_.config().page_size;
  stats_.kv_pages_total = plan.kv_capacity_tokens / stats_.page_size;
  counters_ = stats_;
  start_time_ = Clock::now();
}

Scheduler::~Scheduler() {
  stop();
  for (const std::unique_ptr<Entry>& e : running_) {
    if (e->admitted && !e->done) engine_.release(e->seq);
  }
}

int64_t Scheduler::pages_for(int64_t tokens) const {
  return ceil_div(tokens, stats_.page_size);
}

Status Scheduler::submit(GenerationRequest request, const std::string& name,
                         GenerationCallback on_event, RequestHandle* handle) {
  TIDAL_RETURN_IF_ERROR(request.stop.validate());
  if (!request.stop.stop_strings.empty() && tokenizer_ == nullptr) {
    return invalid_argument("stop strings need a tokenizer; this model has none");
  }
  // Everything validate_sequence reads is fixed when the engine is made: safe on any thread.
  SequenceOptions options;
  options.attention = request.attention;
  options.sampling = request.sampling;
  TIDAL_RETURN_IF_ERROR(engine_.validate_sequence(request.prompt, options));
  auto e = std::make_unique<Entry>();
  e->name = name;
  e->on_event = std::move(on_event);
  e->state = std::make_unique<RequestState>(std::move(request), tokenizer_);
  e->submitted = Clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  if (!admitting_) return unavailable("the server is shutting down and takes no new requests");
  if (unended_ >= options_.max_queue) {
    return unavailable("the server holds " + std::to_string(unended_) +
                       " requests, its limit; retry later");
  }
  if (!name.empty() && names_.count(name) > 0) {
    return already_exists("request id '" + printable(name, 80) + "' is already running");
  }
  e->handle = next_handle_++;
  if (!name.empty()) names_[name] = e->handle;
  live_[e->handle] = true;
  unended_ += 1;
  *handle = e->handle;
  inbox_.push_back(std::move(e));
  wake_.notify_all();
  return ok_status();
}

bool Scheduler::cancel(const std::string& name, const Status& why) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = names_.find(name);
  if (it == names_.end()) return false;
  cancels_.push_back(Cancel{it->second, why});
  wake_.notify_all();
  return true;
}

bool Scheduler::cancel(RequestHandle handle, const Status& why) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(handle);
  if (it == live_.end() || !it->second) return false;  // none, or it has ended
  cancels_.push_back(Cancel{handle, why});
  wake_.notify_all();
  return true;
}

void Scheduler::cancel_all(const Status& why) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [handle, live] : live_) {
    if (live) cancels_.push_back(Cancel{handle, why});
  }
  wake_.notify_all();
}

void Scheduler::stop_admitting() {
  std::lock_guard<std::mutex> lock(mu_);
  admitting_ = false;
}

void Scheduler::start() {
  TIDAL_CHECK(!thread_.joinable(), "Scheduler::start: already running");
  thread_ = std::thread([this] {
    for (;;) {
      bool work = false;
      {
        std::unique_lock<std::mutex> lock(mu_);
        // Idle, it wakes every second to refresh the statistics (tokens/s decays to 0).
        work = wake_.wait_for(lock, std::chrono::seconds(1), [this] {
          return stopping_ || !inbox_.empty() || !cancels_.empty() || busy_;
        });
        if (stopping_) return;
      }
      if (work) {
        step();
      } else {
        publish(0);
      }
    }
  });
}

void Scheduler::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    wake_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

bool Scheduler::wait_idle(double secs) {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_.wait_for(lock, bounded_wait(secs), [this] { return live_.empty(); });
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void Scheduler::take_inbox() {
  std::vector<Cancel> cancels;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (std::unique_ptr<Entry>& e : inbox_) queue_.push_back(std::move(e));
    inbox_.clear();
    cancels.swap(cancels_);
  }
  for (const Cancel& c : cancels) {
    auto mark = [&c](const std::unique_ptr<Entry>& e) {
      if (e->handle != c.handle || e->cancelled) return false;
      e->cancelled = true;
      e->cancel_status = c.why;
      return true;
    };
    if (std::none_of(running_.begin(), running_.end(), mark)) {
      std::any_of(queue_.begin(), queue_.end(), mark);
    }
  }
}

void Scheduler::reap_cancelled() {
  for (const std::unique_ptr<Entry>& e : running_) {
    if (e->cancelled && !e->done) finish(*e, FinishReason::kCancelled, e->cancel_status);
  }
  for (const std::unique_ptr<Entry>& e : queue_) {
    if (e->cancelled && !e->done) finish(*e, FinishReason::kCancelled, e->cancel_status);
  }
  remove_done();
}

void Scheduler::admit() {
  const int64_t slots = engine_.config().max_batch;
  while (!queue_.empty() && int64_t(running_.size()) < slots) {
    Entry& e = *queue_.front();
    const GenerationRequest& r = e.state->request();
    int64_t need = 0;
    if (options_.admission == SchedulerOptions::Admission::kReserve) {
      // Rows cached at most: the prompt and every generated token but the last. max_new_tokens
      // comes from the wire (any int64 >= 1): clamp before adding, or the sum overflows (the
      // prompt fits the context: submit checked it).
      const int64_t context = engine_.memory_plan().max_context;
      const int64_t rows =
          e.prompt_size() + std::min(r.stop.max_new_tokens - 1, context - e.prompt_size());
      need = std::min(pages_for(rows), stats_.kv_pages_total);
      if (reserved_pages_ + need > stats_.kv_pages_total) break;  // waits for pages
    }
    SequenceOptions options;
    options.attention = r.attention;
    options.sampling = r.sampling;
    const Status st = engine_.add_sequence(r.prompt, options, &e.seq);
    if (!st.ok()) {
      const bool later =
          st.code() == StatusCode::kOutOfMemory || st.code() == StatusCode::kUnavailable;
      if (later && !running_.empty()) break;  // waits for pages or a slot
      finish(e, FinishReason::kCancelled, st);
      queue_.pop_front();
      continue;
    }
    e.admitted = true;
    e.reserved = need;
    reserved_pages_ += need;
    counters_.prompt_tokens += e.prompt_size();
    running_.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
}

void Scheduler::finish(Entry& e, FinishReason reason, const Status& status) {
  GenerationEvent ev;
  e.state->finish(reason, &ev);
  GenerationResult& r = e.state->result();
  if (e.admitted) {
    r.stats = engine_.stats(e.seq);
    r.cached_tokens = engine_.length(e.seq);
    engine_.release(e.seq);
    reserved_pages_ -= e.reserved;
  }
  e.done = true;
  if (e.cancelled || (reason == FinishReason::kCancelled && status.ok())) {
    counters_.cancelled += 1;
  } else if (!status.ok()) {
    counters_.failed += 1;
  } else {
    counters_.finished += 1;
  }
  {
    // Before the client can see the end: its id is free (a Cancel after it finds nothing), its
    // place in the queue too (a request sent after it is not refused as over max_queue), and the
    // statistics count it (GetStats after it shows it ended and its pages back).
    std::lock_guard<std::mutex> lock(mu_);
    auto it = names_.find(e.name);
    if (it != names_.end() && it->second == e.handle) names_.erase(it);
    auto live = live_.find(e.handle);
    if (live != live_.end() && live->second) {
      live->second = false;
      unended_ -= 1;
    }
    snapshot_locked();
  }
  ev.result = &r;
  ev.status = status;
  e.on_event(ev);
  std::lock_guard<std::mutex> lock(mu_);
  live_.erase(e.handle);
  idle_.notify_all();
}

void Scheduler::snapshot_locked() {
  const double rate = stats_.tokens_per_second;
  stats_ = counters_;
  stats_.tokens_per_second = rate;
  auto live = [](const std::unique_ptr<Entry>& e) { return !e->done; };
  stats_.queued = int64_t(std::count_if(queue_.begin(), queue_.end(), live) + inbox_.size());
  stats_.running = int64_t(std::count_if(running_.begin(), running_.end(), live));
  stats_.kv_pages_used = stats_.kv_pages_total - engine_.free_kv_pages();
  stats_.kv_pages_reserved = reserved_pages_;
}

void Scheduler::remove_done() {
  auto done = [](const std::unique_ptr<Entry>& e) { return e->done; };
  running_.erase(std::remove_if(running_.begin(), running_.end(), done), running_.end());
  queue_.erase(std::remove_if(queue_.begin(), queue_.end(), done), queue_.end());
}

bool Scheduler::deliver(Entry& e, int32_t token) {
  GenerationResult& r = e.state->result();
  const int64_t length = engine_.length(e.seq);
  if (token == kNonFiniteToken) {
    finish(e, FinishReason::kCancelled,
           internal_error("non-finite logits (NaN or infinity) at step " +
                          std::to_string(r.tokens.size()) + " of the generation (position " +
                          std::to_string(length - 1) + "): the weights or activations overflowed"));
    return false;
  }
  GenerationEvent ev;
  std::optional<FinishReason> why;
  const Status st =
      e.state->accept(token, length + 1 > engine_.memory_plan().max_context, &ev, &why);
  if (!st.ok()) {
    finish(e, FinishReason::kCancelled, st);
    return false;
  }
  counters_.generated_tokens += 1;
  step_tokens_ += 1;
  if (r.tokens.size() == 1) r.first_token_seconds = seconds(Clock::now() - e.submitted);
  if (!e.on_event(ev)) {
    e.cancelled = true;
    finish(e, FinishReason::kCancelled);
    return false;
  }
  if (why) {
    finish(e, *why);
    return false;
  }
  e.next = token;
  return true;
}

bool Scheduler::step() {
  take_inbox();
  reap_cancelled();
  admit();
  step_tokens_ = 0;
  const bool ran = !running_.empty() && run_step();
  publish(step_tokens_);
  return ran || !queue_.empty() || !running_.empty();
}

bool Scheduler::run_step() {
  // A decoding request whose next token finds no free KV page ends (kKvCapacity), so the others
  // go on; pages go to the earliest admitted first. Under kReserve this never happens (a request
  // holds at most what it was promised) unless its own generation exceeds the whole cache.
  int64_t granted = 0;
  for (const std::unique_ptr<Entry>& e : running_) {
    if (!e->decoding || e->done) continue;
    const int64_t need = engine_.pages_for_next_token(e->seq);
    if (granted + need <= engine_.free_kv_pages()) {
      granted += need;
    } else {
      finish(*e, FinishReason::kKvCapacity);
    }
  }
  remove_done();
  if (running_.empty()) return false;

  ids_.clear();
  tokens_.clear();
  chunks_.clear();
  decoding_.clear();
  chunked_.clear();
  const int64_t chunk = engine_.config().prefill_chunk;
  const size_t max_chunks = size_t(engine_.config().max_batch);
  int64_t budget = chunk;  // chunk tokens left in this step
  // Chunks are cut where a whole-prompt prefill (or correct()) cuts them, every `chunk`
  // positions from the start, so a request's numbers do not depend on what it shares a step
  // with. Correction chunks go first (their requests wait for them), except that a prefill
  // chunk that found no room in the last step goes first in this one.
  auto add_corrections = [&] {
    for (const std::unique_ptr<Entry>& e : running_) {
      if (!e->correcting()) continue;
      const int64_t n = std::min(chunk, e->corr_end - e->corr_next);
      if (n > budget || chunks_.size() == max_chunks) continue;
      chunks_.push_back(StepChunk{e->seq, e->corr_next, n, false, e->corr_next + n == e->corr_end});
      chunked_.push_back(e.get());
      budget -= n;
    }
  };
  auto add_prefills = [&] {
    bool first = true;
    for (const std::unique_ptr<Entry>& e : running_) {
      if (e->decoding) continue;
      const int64_t n = std::min(chunk, e->prompt_size() - e->prompt_done);
      if (n > budget || chunks_.size() == max_chunks) {
        prefill_waited_ = first;
        return;  // in order: a later prompt does not overtake this one
      }
      chunks_.push_back(
          StepChunk{e->seq, e->prompt_done, n, e->prompt_done + n == e->prompt_size(), false});
      chunked_.push_back(e.get());
      budget -= n;
      first = false;
      if (!e->prefill_started) {
        e->prefill_started = true;
        e->prefill_start = Clock::now();
        e->state->result().queue_seconds = seconds(e->prefill_start - e->submitted);
      }
    }
    prefill_waited_ = false;
  };
  if (prefill_waited_) {
    add_prefills();
    add_corrections();
  } else {
    add_corrections();
    add_prefills();
  }
  // Every decoding request decodes, unless its correction pass still has chunks after this
  // step's (it decodes beside the pass's last chunk).
  for (const std::unique_ptr<Entry>& e : running_) {
    if (!e->decoding) continue;
    if (e->correcting()) {
      auto it = std::find(chunked_.begin(), chunked_.end(), e.get());
      if (it == chunked_.end() || !chunks_[size_t(it - chunked_.begin())].ends_pass) continue;
    }
    ids_.push_back(e->seq);
    tokens_.push_back(e->next);
    decoding_.push_back(e.get());
  }
  if (ids_.empty() && chunks_.empty()) return false;

  const auto t0 = Clock::now();
  const Status st = engine_.step(ids_, tokens_, chunks_, TensorView(), &sampled_);
  const double dt = seconds(Clock::now() - t0);
  if (!st.ok()) {  // a bug in the plan above, not the requests': they fail with it
    for (Entry* e : decoding_) finish(*e, FinishReason::kCancelled, st.with_context("step"));
    for (Entry* e : chunked_) {
      if (!e->done) finish(*e, FinishReason::kCancelled, st.with_context("step"));
    }
    remove_done();
    return true;
  }
  counters_.steps += 1;
  if (!ids_.empty() && !chunks_.empty()) counters_.mixed_steps += 1;
  {
    // Before any client sees this step's tokens: GetStats after a token shows its request
    // running and its KV pages held. The step's counters (tokens, finished requests) join in
    // the snapshot of a request's end (finish) and in publish() after the step.
    std::lock_guard<std::mutex> lock(mu_);
    snapshot_locked();
  }
  size_t sample = ids_.size();  // the chunks' sampled ids follow the decode tokens'
  for (size_t i = 0; i < chunks_.size(); ++i) {
    const StepChunk& c = chunks_[i];
    Entry& e = *chunked_[i];
    if (e.decoding) {  // a correction chunk
      e.corr_next += c.count;
      counters_.correction_tokens += c.count;
      if (c.ends_pass) counters_.correction_passes += 1;
      continue;
    }
    e.prompt_done += c.count;
    if (!c.sample) continue;
    e.decoding = true;
    e.state->result().prefill_seconds = seconds(Clock::now() - e.prefill_start);
    deliver(e, sampled_[sample++]);
  }
  for (size_t i = 0; i < decoding_.size(); ++i) {
    Entry& e = *decoding_[i];
    e.state->result().decode_seconds += dt;
    if (!deliver(e, sampled_[i])) continue;
    // Cache correction (reference/TIDALDECODE.md §2): every N decode steps, the last N tokens.
    const int64_t interval = e.state->request().attention.correction_interval;
    if (interval > 0 && ++e.since_correction == interval) {
      e.corr_end = engine_.length(e.seq);
      e.corr_next = e.corr_end - interval;
      e.since_correction = 0;
    }
  }
  remove_done();
  return true;
}

void Scheduler::publish(int64_t tokens) {
  const auto now = Clock::now();
  window_.emplace_back(now, tokens);
  const double window = options_.rate_window_seconds;
  while (!window_.empty() && seconds(now - window_.front().first) > window) {
    window_.pop_front();
  }
  int64_t sum = 0;
  for (const auto& w : window_) sum += w.second;
  const double span = std::min(window, std::max(seconds(now - start_time_), 1e-9));
  std::lock_guard<std::mutex> lock(mu_);
  snapshot_locked();
  stats_.tokens_per_second = double(sum) / span;
  busy_ = !queue_.empty() || !running_.empty();
}

}  // namespace tidal::engine
