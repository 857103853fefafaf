// SPDX-License-Identifier: Apache-2.0
// `tidal client`: a generation streamed from a tidal server to the terminal (text on stdout as it
// comes; the finish, usage and, with --stats, the attention statistics on stderr), or one JSON
// line per response with --json. --chat without a prompt is a conversation: each stdin line is a
// user turn, the replies stream back. --info, --server-stats, --health, --cancel and --tokenize
// ask the server something else. A failed call ends with `tidal: error: CODE: message`, exit 1.
#include "rpc/client.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <iostream>
#include <string>

#include "launch/cli.h"
#include "launch/flag_names.h"
#include "rpc/service.h"
#include "runtime/file.h"

namespace tidal::launch {
namespace {

// Every code gRPC defines: those the tidal server never sends still come from other servers or
// proxies on --server, and from the gRPC library itself.
std::string code_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "code " + std::to_string(int(code));
  }
}

Status from_grpc(const grpc::Status& st) {
  if (st.ok()) return ok_status();
  std::string msg = code_name(st.error_code()) + ": " + st.error_message();
  // gRPC sends UNIMPLEMENTED without a message for a method the server does not have.
  if (st.error_code() == grpc::StatusCode::UNIMPLEMENTED && st.error_message().empty()) {
    msg += "the server on --server does not serve this call (not a tidal server, or an older one)";
  }
  for (char& c : msg) c = c == '\n' ? ' ' : c;
  return unavailable(msg);
}

std::string to_json(const google::protobuf::Message& m, bool one_line) {
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  opts.add_whitespace = !one_line;
  opts.always_print_primitive_fields = true;  // zeros too: "kv_pages_used": "0"
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out, opts);
  if (!one_line && !out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

Status write_out(const std::string& text) {
  if (!text.empty() && (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() ||
                        std::fflush(stdout) != 0)) {
    return unavailable(std::string("cannot write to stdout: ") + std::strerror(errno));
  }
  return ok_status();
}

bool flag_given(const ClientOptions& c, const char* flag) {
  const std::vector<std::string>& given = c.generation_flags_given;
  return std::find(given.begin(), given.end(), flag) != given.end();
}

// The request the flags describe: the same flag checks as `generate` (build_policy), then every
// sampling field set explicitly (generate's defaults, not the API's) except the seed, sent only
// when --seed is given (else the server draws one per request and reports it), and the policy
// fields its kind reads.
Status build_request(const ClientOptions& c, v1::GenerateRequest* req) {
  const GenerateOptions& o = c.request;
  model::AttentionPolicy policy;
  TIDAL_RETURN_IF_ERROR(build_policy(o, &policy));
  TIDAL_RETURN_IF_ERROR(name_flags(o.sampling.validate()));
  TIDAL_RETURN_IF_ERROR(name_flags(o.stop.validate()));
  req->set_request_id(c.request_id);
  TIDAL_RETURN_IF_ERROR(check_prompt_flags(o));
  if (o.prompt_ids_given) {
    if (o.chat) return invalid_argument("--chat needs a text prompt, not --prompt-ids");
    std::vector<int32_t> ids;
    TIDAL_RETURN_IF_ERROR(parse_id_list(o.prompt_ids, &ids));
    if (ids.empty()) return invalid_argument("--prompt-ids holds no ids");
    for (int32_t id : ids) req->mutable_ids()->add_ids(id);
  } else {
    std::string text = o.prompt;
    if (o.prompt_file_given) TIDAL_RETURN_IF_ERROR(read_file(o.prompt_file, &text));
    if (o.chat) {
      if (!c.system.empty()) {
        v1::ChatMessage* m = req->mutable_chat()->add_messages();
        m->set_role("system");
        m->set_content(c.system);
      }
      v1::ChatMessage* m = req->mutable_chat()->add_messages();
      m->set_role("user");
      m->set_content(text);
    } else {
      req->set_text(text);
    }
  }
  v1::SamplingParams* s = req->mutable_sampling();
  s->set_temperature(o.sampling.temperature);
  s->set_top_k(o.sampling.top_k);
  s->set_top_p(o.sampling.top_p);
  s->set_min_p(o.sampling.min_p);
  if (flag_given(c, "--seed")) s->set_seed(o.sampling.seed);
  v1::StopConditions* stop = req->mutable_stop();
  stop->set_max_new_tokens(o.stop.max_new_tokens);
  for (const std::string& str : o.stop.stop_strings) stop->add_stop_strings(str);
  stop->set_ignore_eos(o.stop.ignore_eos);
  v1::AttentionPolicy* a = req->mutable_attention();
  a->set_kind(o.attention);
  if (policy.kind != model::AttentionKind::kFull) {
    a->set_budget(o.budget);
    req->set_correction_interval(o.correction_interval);
  }
  if (policy.kind == model::AttentionKind::kTidal) {
    a->set_granularity(o.granularity);
    // Layers only when a flag names them: else the server's default (the model's
    // tidal_policy.json, or the depth-scaled rule), as `generate` does.
    const auto& given = o.attention_flags_given;
    if (std::find(given.begin(), given.end(), "--sparse-start") != given.end()) {
      a->set_sparse_start(o.sparse_start);
    }
    a->set_agreement(o.agreement);
    if (policy.tidal.reselect_layers.has_value()) {
      v1::LayerList* layers = a->mutable_reselect_layers();
      for (int64_t l : *policy.tidal.reselect_layers) layers->add_layers(l);
    }
  }
  return ok_status();
}

// The finish reason without its enum prefix; one this build does not know (a newer server's) as
// its number: FinishReason_Name gives it an empty name, too short to strip.
std::string finish_name(int finish) {
  const std::string& name = v1::FinishReason_Name(v1::FinishReason(finish));
  const std::string prefix = "FINISH_REASON_";
  if (name.rfind(prefix, 0) == 0) return name.substr(prefix.size());
  return name.empty() ? "unknown (" + std::to_string(finish) + ")" : name;
}

void print_final(const v1::FinalMessage& f, bool stats) {
  const v1::Usage& u = f.usage();
  const double n = double(u.generated_tokens());
  std::fprintf(stderr,
               "tidal: prompt %lld tokens; generated %lld tokens; queue %.1f ms, ttft %.1f ms "
               "(server), %.1f tok/s; finish: %s; seed %llu\n",
               static_cast<long long>(u.prompt_tokens()),
               static_cast<long long>(u.generated_tokens()), u.queue_seconds() * 1e3,
               u.first_token_seconds() * 1e3,
               u.decode_seconds() > 0 && n > 1 ? (n - 1) / u.decode_seconds() : 0.0,
               finish_name(f.finish()).c_str(), static_cast<unsigned long long>(f.seed()));
  if (!stats) return;
  const v1::AttentionStats& s = f.stats();
  std::fprintf(stderr, "tidal: attention: %lld decode steps\n",
               static_cast<long long>(s.decode_steps()));
  for (const v1::LayerRoleStats& r : s.roles()) {
    std::fprintf(stderr, "tidal:   %-6s %8lld layer-steps %12lld KV rows (%.1f per layer-step)\n",
                 r.role().c_str(), static_cast<long long>(r.layer_steps()),
                 static_cast<long long>(r.rows()),
                 r.layer_steps() ? double(r.rows()) / double(r.layer_steps()) : 0.0);
  }
  std::fprintf(stderr, "tidal:   KV rows read in all: %lld\n",
               static_cast<long long>(s.rows_total()));
  if (s.overlap_total() > 0) {
    std::fprintf(stderr, "tidal:   overlap of consecutive selection layers' lists: %.1f%%\n",
                 100.0 * double(s.overlap_kept()) / double(s.overlap_total()));
  }
  std::fprintf(stderr, "tidal:   cache correction: %lld passes, %lld tokens recomputed\n",
               static_cast<long long>(s.correction_passes()),
               static_cast<long long>(s.correction_tokens()));
}

// Streams one generation; `reply` receives its text.
Status stream(rpc::Client& client, const ClientOptions& c, const v1::GenerateRequest& req,
              std::string* reply) {
  Status write;
  bool text_out = false;  // text written to stdout (not JSON lines, not ids)
  std::vector<int32_t> ids;
  v1::FinalMessage final;
  const grpc::Status st = client.generate(
      req,
      [&](const v1::GenerateResponse& m) {
        ids.insert(ids.end(), m.token_ids().begin(), m.token_ids().end());
        *reply += m.text();
        if (c.json) {
          write = write_out(to_json(m, true) + "\n");
        } else if (!c.request.print_ids) {
          write = write_out(m.text());
          text_out = text_out || !m.text().empty();
        }
        return write.ok();  // stdout gone: stop reading (the server cancels the request)
      },
      &final);
  TIDAL_RETURN_IF_ERROR(write);
  const Status failed = from_grpc(st);
  if (!failed.ok()) {
    // The text so far ends its line as a finished one does: on a terminal the error line would
    // run on from it. The failure is the one to report, whatever this write meets.
    if (text_out) (void)write_out("\n");
    return failed;
  }
  if (!c.json) {
    std::string tail;
    if (c.request.print_ids) {
      for (size_t i = 0; i < ids.size(); ++i) tail += (i ? " " : "") + std::to_string(ids[i]);
    }
    TIDAL_RETURN_IF_ERROR(write_out(tail + "\n"));
    print_final(final, c.request.stats);
  }
  return ok_status();
}

// --chat without a prompt: every stdin line is a user turn; the replies stream back.
Status converse(rpc::Client& client, const ClientOptions& c, v1::GenerateRequest req) {
  req.clear_chat();
  if (!c.system.empty()) {
    v1::ChatMessage* m = req.mutable_chat()->add_messages();
    m->set_role("system");
    m->set_content(c.system);
  }
  std::string line;
  while (std::fprintf(stderr, "> "), std::getline(std::cin, line)) {
    if (line.empty()) continue;
    v1::ChatMessage* user = req.mutable_chat()->add_messages();
    user->set_role("user");
    user->set_content(line);
    std::string reply;
    TIDAL_RETURN_IF_ERROR(stream(client, c, req, &reply));
    v1::ChatMessage* assistant = req.mutable_chat()->add_messages();
    assistant->set_role("assistant");
    assistant->set_content(reply);
  }
  return ok_status();
}

// Flags without effect on what the client does are refused, as `generate` refuses them.
Status check_client_flags(const ClientOptions& c) {
  // gRPC would take it as a target, log its own lines and fail with UNKNOWN, naming no flag.
  if (c.server.empty()) return invalid_argument("--server needs host:port (got an empty one)");
  if (c.cancel_given && c.cancel.empty()) {
    return invalid_argument("--cancel needs the id of the request to cancel (got an empty one)");
  }
  // An empty token would be sent as none: a server that wants one would answer UNAUTHENTICATED
  // without naming the flag, an open one would be called as if the flag were absent.
  TIDAL_RETURN_IF_ERROR(check_auth_token_flags(
      c.auth_token, c.auth_token_given, c.auth_token_file, c.auth_token_file_given,
      "give the server's secret, or leave the flag out for a server without one"));
  if (c.system_given && !c.request.chat) {
    return invalid_argument("--system has no effect without --chat");
  }
  const char* call = c.info           ? "--info"
                     : c.server_stats ? "--server-stats"
                     : c.health       ? "--health"
                     : c.cancel_given ? "--cancel"
                     : c.tokenize     ? "--tokenize"
                                      : nullptr;
  // --json shapes a generation's responses and --info's / --server-stats' replies; these three
  // print plain text (a status, a line, ids) whatever it says.
  if (c.json && (c.health || c.cancel_given || c.tokenize)) {
    return invalid_argument(std::string("--json has no effect with ") + call);
  }
  if (c.json && c.request.print_ids) {
    return invalid_argument("--print-ids has no effect with --json (every line holds the ids)");
  }
  if (call == nullptr) return ok_status();
  for (const std::string& flag : c.generation_flags_given) {
    // --tokenize reads the prompt (and --chat's template), nothing else of a generation.
    const bool prompt =
        flag == "--prompt" || flag == "--prompt-file" || flag == "--prompt-ids" || flag == "--chat";
    if (!(c.tokenize && prompt)) return invalid_argument(flag + " has no effect with " + call);
  }
  return ok_status();
}

}  // namespace

Status run_client(const ClientOptions& c) {
  TIDAL_RETURN_IF_ERROR(check_client_flags(c));
  rpc::ClientOptions co;
  co.auth_token = c.auth_token;
  if (c.auth_token_file_given) {
    TIDAL_RETURN_IF_ERROR(read_auth_token_file(c.auth_token_file, &co.auth_token));
  }
  TIDAL_RETURN_IF_ERROR(check_seconds(c.timeout, "--timeout"));
  co.timeout_seconds = c.timeout;
  rpc::Client client(c.server, co);
  if (c.info || c.server_stats) {
    v1::ModelInfo info;
    v1::Stats stats;
    TIDAL_RETURN_IF_ERROR(from_grpc(c.info ? client.model_info(&info) : client.stats(&stats)));
    const google::protobuf::Message& m =
        c.info ? static_cast<const google::protobuf::Message&>(info) : stats;
    return write_out(to_json(m, c.json) + "\n");
  }
  if (c.health) {
    grpc::health::v1::HealthCheckResponse::ServingStatus status;
    TIDAL_RETURN_IF_ERROR(from_grpc(client.health(rpc::kServiceName, &status)));
    const std::string name = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(status);
    TIDAL_RETURN_IF_ERROR(write_out(name + "\n"));
    if (status != grpc::health::v1::HealthCheckResponse::SERVING) {
      return unavailable("the server is " + name);
    }
    return ok_status();
  }
  if (c.cancel_given) {
    bool found = false;
    TIDAL_RETURN_IF_ERROR(from_grpc(client.cancel(c.cancel, &found)));
    if (!found) return not_found("no live request has id '" + c.cancel + "'");
    return write_out("cancelled " + c.cancel + "\n");
  }
  v1::GenerateRequest req;
  TIDAL_RETURN_IF_ERROR(build_request(c, &req));
  if (c.tokenize) {
    v1::TokenizeRequest tr;
    if (req.has_chat()) *tr.mutable_chat() = req.chat();
    if (req.prompt_case() == v1::GenerateRequest::kText) tr.set_text(req.text());
    if (req.has_ids()) return invalid_argument("--tokenize needs a text prompt");
    v1::TokenizeResponse resp;
    TIDAL_RETURN_IF_ERROR(from_grpc(client.tokenize(tr, &resp)));
    std::string out;
    for (int i = 0; i < resp.ids_size(); ++i) out += (i ? " " : "") + std::to_string(resp.ids(i));
    return write_out(out + "\n");
  }
  const GenerateOptions& o = c.request;
  if (o.chat && !o.prompt_given && !o.prompt_file_given) return converse(client, c, req);
  std::string reply;
  return stream(client, c, req, &reply);
}

}  // namespace tidal::launch
