// SPDX-License-Identifier: Apache-2.0
#include "rpc/generate_stream.h"

#include <cstdio>

#include "rpc/convert.h"

namespace tidal::rpc {

GenerateStream::GenerateStream(InferenceService* service, grpc::CallbackServerContext* ctx)
    : service_(service), ctx_(ctx) {
  service_->stream_started();
}

void GenerateStream::begin(const v1::GenerateRequest& req) {
  grpc::Status auth = service_->check_auth(*ctx_);
  if (!auth.ok()) {
    Finish(auth);
    return;
  }
  if (service_->draining()) {
    Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the server is shutting down and takes no new requests"));
    return;
  }
  engine::Engine& engine = service_->engine();
  engine::GenerationRequest request;
  Status st = from_proto(req, service_->tokenizer(), engine.model_config(),
                         engine.config().page_size, &request, &service_->model_layers());
  if (!st.ok()) {
    Finish(to_grpc_status(st));
    return;
  }
  policy_ = policy_summary(request.attention);
  // An unset seed is a fresh one per request (as OpenAI-style servers do), reported in the final
  // message so that the request can be reproduced; from_proto left the engine's default.
  if (!req.sampling().has_seed()) request.sampling.seed = service_->draw_seed();
  seed_ = request.sampling.seed;
  const bool named = !req.request_id().empty();
  for (;;) {
    id_ = named ? req.request_id() : service_->next_request_id();
    pending_.set_request_id(id_);
    // A client may name its own request "tidal-N" too. An id the server picked that a live
    // request holds is skipped (a copy of the request is submitted, for the retry): a request
    // without an id is never refused as a duplicate. At most max_queue ids are live: this ends.
    st = service_->scheduler().submit(
        named ? std::move(request) : request, id_,
        [this](const engine::GenerationEvent& ev) { return on_event(ev); }, &handle_);
    if (named || st.code() != StatusCode::kAlreadyExists) break;
  }
  if (!st.ok()) Finish(to_grpc_status(st.with_context("request " + id_)));
}

bool GenerateStream::on_event(const engine::GenerationEvent& ev) {
  std::unique_lock<std::mutex> lock(mu_);
  const bool keep = !gone_;
  if (!ev.finished) {
    pending_.add_token_ids(ev.token);
    pending_.mutable_text()->append(ev.text);
    has_pending_ = true;
  } else {
    log_finish(ev);
    if (ev.status.ok()) {
      pending_.mutable_text()->append(ev.text);
      to_proto(*ev.result, pending_.mutable_final());
      pending_.mutable_final()->set_seed(seed_);
      has_pending_ = true;
      final_status_ = grpc::Status::OK;
    } else {
      final_status_ = to_grpc_status(ev.status);
    }
    final_ready_ = true;
  }
  advance(lock);
  return keep;
}

void GenerateStream::advance(std::unique_lock<std::mutex>& lock) {
  if (writing_ || finish_called_) return;
  if (gone_) {  // nobody reads: drop what is pending, finish once the request has ended
    pending_.Clear();
    has_pending_ = false;
  }
  if (has_pending_) {
    out_.Clear();
    out_.Swap(&pending_);
    pending_.set_request_id(id_);
    has_pending_ = false;
    writing_ = true;
    lock.unlock();
    StartWrite(&out_);
    return;
  }
  if (final_ready_) {
    finish_called_ = true;
    const grpc::Status st = final_status_;
    lock.unlock();
    Finish(st);  // `this` may be deleted (OnDone) from here on
  }
}

void GenerateStream::OnWriteDone(bool ok) {
  std::unique_lock<std::mutex> lock(mu_);
  writing_ = false;
  if (!ok) gone_ = true;
  advance(lock);
}

void GenerateStream::OnCancel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    gone_ = true;
  }
  // Frees the request's KV cache at the next step (a queued request never starts).
  if (handle_ != 0) service_->scheduler().cancel(handle_);
}

void GenerateStream::OnDone() {
  InferenceService* service = service_;
  delete this;
  service->stream_done();
}

void GenerateStream::log_finish(const engine::GenerationEvent& ev) const {
  const engine::GenerationResult& r = *ev.result;
  const double n = double(r.tokens.size());
  const double rate = r.decode_seconds > 0 && n > 1 ? (n - 1) / r.decode_seconds : 0.0;
  char line[512];
  std::snprintf(line, sizeof(line),
                "request %s: prompt %lld tokens, generated %lld, %s, queue %.1f ms, ttft %.1f ms, "
                "%.1f tok/s, ",
                printable(id_, 80).c_str(), static_cast<long long>(r.prompt_tokens),
                static_cast<long long>(r.tokens.size()), policy_.c_str(), r.queue_seconds * 1e3,
                r.first_token_seconds * 1e3, rate);
  std::string out = line;
  if (ev.status.ok()) {
    out += std::string("finish ") + engine::finish_reason_name(r.finish);
  } else {
    out += "ended: " + ev.status.message();
  }
  service_->log(out);
}

}  // namespace tidal::rpc
