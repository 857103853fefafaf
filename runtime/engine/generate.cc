// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/generate.h"

#include "runtime/engine/scheduler.h"

namespace tidal::engine {
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
  if (stop_strings.size() > kMaxStopStrings) {
    return invalid_argument("stop_strings: at most " + std::to_string(kMaxStopStrings) +
                            " (got " + std::to_string(stop_strings.size()) + ")");
  }
  for (const std::string& s : stop_strings) {
    if (s.empty()) return invalid_argument("stop_strings must not hold an empty string");
    if (s.size() > kMaxStopStringBytes) {
      return invalid_argument("stop_strings: each at most " + std::to_string(kMaxStopStringBytes) +
                              " bytes (got one of " + std::to_string(s.size()) + ")");
    }
  }
  return ok_status();
}

Status generate(Engine& engine, const std::vector<GenerationRequest>& requests,
                const model::Tokenizer* tokenizer, const GenerationCallback& on_event,
                std::vector<GenerationResult>* results) {
  // An error names its request only among several: `tidal generate` runs one, and its errors
  // read alike whether the command's checks before loading found them or these did (--preset,
  // --tp/--pp).
  const auto in_request = [&requests](const Status& st, size_t i) {
    return requests.size() > 1 ? st.with_context("request " + std::to_string(i)) : st;
  };
  for (size_t i = 0; i < requests.size(); ++i) {
    TIDAL_RETURN_IF_ERROR(in_request(requests[i].sampling.validate(), i));
    TIDAL_RETURN_IF_ERROR(in_request(requests[i].stop.validate(), i));
    TIDAL_RETURN_IF_ERROR(in_request(
        requests[i].attention.validate(engine.model_config(), engine.config().page_size), i));
    if (!requests[i].stop.stop_strings.empty() && tokenizer == nullptr) {
      return in_request(invalid_argument("stop strings need a tokenizer"), i);
    }
  }
  results->assign(requests.size(), GenerationResult());
  SchedulerOptions options;
  options.admission = SchedulerOptions::Admission::kOnDemand;
  Scheduler scheduler(engine, tokenizer, options);
  Status failure;
  for (size_t i = 0; i < requests.size(); ++i) {
    RequestHandle handle = 0;
    auto forward = [i, &on_event, results, &failure, &in_request](const GenerationEvent& ev) {
      GenerationEvent mine = ev;
      mine.request = i;
      if (ev.finished) {
        (*results)[i] = *ev.result;
        if (!ev.status.ok() && failure.ok()) failure = in_request(ev.status, i);
      }
      return on_event(mine);
    };
    TIDAL_RETURN_IF_ERROR(in_request(scheduler.submit(requests[i], "", forward, &handle), i));
  }
  while (failure.ok() && scheduler.step()) {
  }
  return failure;
}

}  // namespace tidal::engine
