// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/generate.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "runtime/engine/stop_strings.h"

namespace tidal::engine {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Per-request state while it is live.
struct Live {
  size_t index = 0;
  SeqId seq = 0;
  std::unique_ptr<model::StreamDecoder> decoder;
  std::unique_ptr<StopStringMatcher> matcher;
  int32_t next = -1;             // sampled, not yet fed
  int64_t since_correction = 0;  // decode steps since the last correction pass
  bool done = false;
};

}  // namespace

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kEos: return "eos";
    case FinishReason::kLength: return "length";
    case FinishReason::kStopString: return "stop_string";
    case FinishReason::kContext: return "context";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kKvCapacity: return "kv_capacity";
  }
  return "unknown";
}

Status StopConditions::validate() const {
  if (max_new_tokens < 1) {
    return invalid_argument("max_new_tokens must be >= 1 (got " + std::to_string(max_new_tokens) +
                            ")");
  }
  for (const std::string& s : stop_strings) {
    if (s.empty()) return invalid_argument("stop_strings must not hold an empty string");
  }
  return ok_status();
}

namespace {

class Generator {
 public:
  Generator(Engine& engine, const std::vector<GenerationRequest>& requests,
            const model::Tokenizer* tokenizer, const GenerationCallback& on_event,
            std::vector<GenerationResult>* results)
      : engine_(engine),
        requests_(requests),
        tokenizer_(tokenizer),
        on_event_(on_event),
        results_(*results) {}

  Status run();

 private:
  Status admit(size_t index, Live* live);
  // Records the sampled token of `live`, streams it, and decides whether it finishes.
  Status accept(Live& live, int32_t token);
  void finish(Live& live, FinishReason reason);
  // Finishes (kKvCapacity) the live sequences whose next token finds no free KV page, so the
  // others can go on.
  void finish_out_of_pages(std::vector<Live>& live);

  Engine& engine_;
  const std::vector<GenerationRequest>& requests_;
  const model::Tokenizer* tokenizer_;
  const GenerationCallback& on_event_;
  std::vector<GenerationResult>& results_;
};

Status Generator::admit(size_t index, Live* live) {
  const GenerationRequest& req = requests_[index];
  live->index = index;
  SequenceOptions options;
  options.attention = req.attention;
  options.sampling = req.sampling;
  TIDAL_RETURN_IF_ERROR(engine_.add_sequence(req.prompt, options, &live->seq));
  if (tokenizer_ != nullptr) {
    // The prompt is the decoder's context: text that follows it keeps its leading space.
    live->decoder =
        std::make_unique<model::StreamDecoder>(*tokenizer_, /*skip_special=*/true, req.prompt);
    live->matcher = std::make_unique<StopStringMatcher>(req.stop.stop_strings);
  }
  const auto t0 = Clock::now();
  int32_t first = -1;
  TIDAL_RETURN_IF_ERROR(engine_.prefill(live->seq, TensorView(), &first));
  results_[index].prefill_seconds = seconds_since(t0);
  results_[index].prompt_tokens = int64_t(req.prompt.size());
  return accept(*live, first);
}

Status Generator::accept(Live& live, int32_t token) {
  const GenerationRequest& req = requests_[live.index];
  GenerationResult& res = results_[live.index];
  res.tokens.push_back(token);
  GenerationEvent ev;
  ev.request = live.index;
  ev.token = token;
  bool stop_string = false;
  if (live.decoder) {
    std::string piece;
    const Status st = live.decoder->push(token, &piece);
    if (!st.ok()) {
      return invalid_argument("the model produced token id " + std::to_string(token) +
                              ", which the tokenizer cannot decode (its vocabulary has " +
                              std::to_string(tokenizer_->vocab_size()) + " ids): " + st.message());
    }
    stop_string = live.matcher->feed(piece, &ev.text);
    res.text += ev.text;
  }
  const bool cancelled = !on_event_(ev);
  const bool eos =
      !req.stop.ignore_eos &&
      std::find(req.stop.eos_ids.begin(), req.stop.eos_ids.end(), token) != req.stop.eos_ids.end();
  live.next = token;
  if (cancelled) {
    finish(live, FinishReason::kCancelled);
  } else if (stop_string) {
    finish(live, FinishReason::kStopString);
  } else if (eos) {
    finish(live, FinishReason::kEos);
  } else if (int64_t(res.tokens.size()) >= req.stop.max_new_tokens) {
    finish(live, FinishReason::kLength);
  } else if (engine_.length(live.seq) + 1 > engine_.memory_plan().max_context) {
    finish(live, FinishReason::kContext);
  }
  return ok_status();
}

void Generator::finish_out_of_pages(std::vector<Live>& live) {
  int64_t granted = 0;  // pages promised to the sequences before this one
  for (Live& l : live) {
    const int64_t need = engine_.pages_for_next_token(l.seq);
    if (granted + need <= engine_.free_kv_pages()) {
      granted += need;
    } else {
      finish(l, FinishReason::kKvCapacity);  // its pages return to the free list
    }
  }
  live.erase(std::remove_if(live.begin(), live.end(), [](const Live& l) { return l.done; }),
             live.end());
}

void Generator::finish(Live& live, FinishReason reason) {
  GenerationResult& res = results_[live.index];
  res.finish = reason;
  GenerationEvent ev;
  ev.request = live.index;
  ev.finished = true;
  if (live.decoder) {
    std::string rest;
    const Status st = live.decoder->finish(&rest);
    TIDAL_CHECK(st.ok(), "generate: stream decoder failed: " + st.message());
    if (reason != FinishReason::kStopString) {
      live.matcher->feed(rest, &ev.text);
      live.matcher->flush(&ev.text);
    }
    res.text += ev.text;
  }
  res.stats = engine_.stats(live.seq);
  res.cached_tokens = engine_.length(live.seq);
  on_event_(ev);
  engine_.release(live.seq);
  live.done = true;
}

Status Generator::run() {
  size_t next_request = 0;
  std::vector<Live> live;
  std::vector<SeqId> ids;
  std::vector<int32_t> tokens, sampled;
  while (next_request < requests_.size() || !live.empty()) {
    // Admit while there are free slots; a full KV cache waits for live sequences to finish.
    while (next_request < requests_.size() && int64_t(live.size()) < engine_.config().max_batch) {
      Live l;
      const Status st = admit(next_request, &l);
      if (st.code() == StatusCode::kOutOfMemory && !live.empty()) break;
      TIDAL_RETURN_IF_ERROR(st.with_context("request " + std::to_string(next_request)));
      ++next_request;
      if (!l.done) live.push_back(std::move(l));
    }
    finish_out_of_pages(live);
    if (live.empty()) continue;
    ids.clear();
    tokens.clear();
    for (const Live& l : live) {
      ids.push_back(l.seq);
      tokens.push_back(l.next);
    }
    const auto t0 = Clock::now();
    TIDAL_RETURN_IF_ERROR(engine_.decode(ids, tokens, TensorView(), &sampled));
    // Cache correction (reference/TIDALDECODE.md §2): every N decode steps of a sequence,
    // recompute its last N tokens densely.
    for (Live& l : live) {
      const int64_t interval = requests_[l.index].attention.correction_interval;
      if (interval > 0 && ++l.since_correction == interval) {
        TIDAL_RETURN_IF_ERROR(engine_.correct(l.seq, interval));
        l.since_correction = 0;
      }
    }
    const double dt = seconds_since(t0);
    for (size_t i = 0; i < live.size(); ++i) {
      results_[live[i].index].decode_seconds += dt;
      TIDAL_RETURN_IF_ERROR(accept(live[i], sampled[i]));
    }
    live.erase(std::remove_if(live.begin(), live.end(), [](const Live& l) { return l.done; }),
               live.end());
  }
  return ok_status();
}

}  // namespace

Status generate(Engine& engine, const std::vector<GenerationRequest>& requests,
                const model::Tokenizer* tokenizer, const GenerationCallback& on_event,
                std::vector<GenerationResult>* results) {
  for (size_t i = 0; i < requests.size(); ++i) {
    const std::string where = "request " + std::to_string(i);
    TIDAL_RETURN_IF_ERROR(requests[i].sampling.validate().with_context(where));
    TIDAL_RETURN_IF_ERROR(requests[i].stop.validate().with_context(where));
    TIDAL_RETURN_IF_ERROR(requests[i]
                              .attention.validate(engine.model_config(), engine.config().page_size)
                              .with_context(where));
    if (!requests[i].stop.stop_strings.empty() && tokenizer == nullptr) {
      return invalid_argument(where + ": stop strings need a tokenizer");
    }
  }
  results->assign(requests.size(), GenerationResult());
  Generator g(engine, requests, tokenizer, on_event, results);
  return g.run();
}

}  // namespace tidal::engine
