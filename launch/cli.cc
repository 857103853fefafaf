// SPDX-License-Identifier: Apache-2.0
// Flag definitions. Defaults live in the option structs; each flag's help names its unit.
#include "launch/cli.h"

#include <cstdio>
#include <sstream>

#include "runtime/device.h"
#include "runtime/file.h"
#include "runtime/thread_pool.h"

namespace tidal::launch {
namespace {

constexpr int kMaxThreads = 1024;

void add_engine_flags(CLI::App* cmd, engine::EngineConfig* e) {
  cmd->add_option("--page-size", e->page_size, "KV cache page size, tokens")->capture_default_str();
  cmd->add_option("--max-context", e->max_context,
                  "tokens per sequence (prompt + generated); 0: the model's context");
  cmd->add_option("--kv-capacity", e->kv_capacity,
                  "KV cache capacity in tokens over all sequences; 0: room for max-batch "
                  "sequences of max-context");
  cmd->add_option("--max-batch", e->max_batch, "sequences decoded together")->capture_default_str();
  cmd->add_option("--prefill-chunk", e->prefill_chunk, "prompt tokens per prefill step")
      ->capture_default_str();
  cmd->add_flag_callback(
      "--no-quest-bounds", [e] { e->quest_bounds = false; },
      "keep no Quest page bounds in the KV cache (at 16-token pages ~6% of a 16-bit cache, ~11% "
      "of an FP8 one); quest requests are then refused");
}

// serve's, and info's to plan such a server: generate sizes it for its one --budget; bench,
// niah and ppl for their lists.
void add_max_budget_flag(CLI::App* cmd, engine::EngineConfig* e) {
  cmd->add_option("--max-budget", e->max_budget,
                  "largest sparse budget a request may ask, tokens, at least 2 (the selection "
                  "lists are sized for it); at or above the context, any budget is taken and "
                  "attends every position")
      ->capture_default_str();
}

// At least 1 when given: 0 would read as "not given" (one process) and a negative count as 1.
void add_parallel_flags(CLI::App* cmd, ParallelFlags* p) {
  const auto ranks = CLI::Range(1, 1 << 16);
  cmd->add_option("--tp", p->tp, "tensor parallel ranks (run under mpirun: -np tp x pp)")
      ->check(ranks);
  cmd->add_option("--pp", p->pp, "pipeline parallel stages (run under mpirun: -np tp x pp)")
      ->check(ranks);
}

void add_device_flags(CLI::App* cmd, DeviceFlags* d) {
  cmd->add_option("--device", d->device, "auto, cpu, cuda or cuda:N (auto: a GPU when present)")
      ->capture_default_str();
  cmd->add_option("--dtype", d->dtype,
                  "weights, activations and KV cache: auto (bf16 on a GPU, f32 on the CPU), "
                  "f32, f16 or bf16")
      ->capture_default_str();
  cmd->add_option("--kv-dtype", d->kv_dtype,
                  "KV cache: auto (the activations' dtype), f32, f16, bf16 (= --dtype) or fp8 "
                  "(e4m3 with a scale per token and KV head)")
      ->capture_default_str();
  cmd->add_flag("--eager", d->eager, "GPU: launch every op each step (no CUDA graph replay)");
  d->threads = default_cpu_threads();
  cmd->add_option("--threads", d->threads,
                  "CPU path: threads (results are identical for every count); default: the "
                  "machine's cores")
      ->capture_default_str();
}

}  // namespace

namespace {

// A string flag that also records that it was given: an empty value is then the flag's value
// (refused where it means nothing, check_prompt_flags), not its absence.
void add_given_option(CLI::App* cmd, const char* name, std::string* value, bool* given,
                      const char* help) {
  cmd->add_option_function<std::string>(
      name,
      [value, given](const std::string& v) {
        *value = v;
        *given = true;
      },
      help);
}

// The prompt, stop, sampling and attention flags `generate` and `client` share. Returns their
// names (for `client`, which refuses them beside --info and the other non-generating calls).
std::vector<std::string> add_request_flags(CLI::App* cmd, GenerateOptions* o) {
  const size_t first = cmd->get_options().size();
  add_given_option(cmd, "--prompt", &o->prompt, &o->prompt_given, "prompt text (empty: BOS only)");
  add_given_option(cmd, "--prompt-file", &o->prompt_file, &o->prompt_file_given,
                   "read the prompt text from a file");
  add_given_option(cmd, "--prompt-ids", &o->prompt_ids, &o->prompt_ids_given,
                   "prompt token ids, e.g. 1,2,3 (used as-is)");
  cmd->add_flag("--chat", o->chat, "wrap the prompt in the Llama-3 instruct chat template");
  cmd->add_flag("--print-ids", o->print_ids, "print the generated ids on one line, not text");
  cmd->add_option("--max-new-tokens", o->stop.max_new_tokens, "tokens to generate at most")
      ->capture_default_str();
  cmd->add_flag("--ignore-eos", o->stop.ignore_eos, "keep generating past end-of-sequence");
  cmd->add_option("--stop", o->stop.stop_strings, "stop when this text appears (repeatable)");
  o->sampling.temperature = 0.8f;
  cmd->add_option("--temperature", o->sampling.temperature, "0: greedy")->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "nucleus mass in (0, 1]")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "0: off")->capture_default_str();
  cmd->add_option("--min-p", o->sampling.min_p, "0: off")->capture_default_str();
  cmd->add_option("--seed", o->sampling.seed, "sampling seed")
      ->check(seed_validator())
      ->capture_default_str();
  cmd->add_option("--attention", o->attention, "full, tidal or quest")->capture_default_str();
  cmd->add_option("--budget", o->budget,
                  "sparse budget K in tokens, the current token included (tidal: per list, "
                  "quest: per head)")
      ->capture_default_str();
  cmd->add_option("--sparse-start", o->sparse_start,
                  "tidal: first selection layer; the layers below are dense (default: the "
                  "model's tidal_policy.json, else 2)")
      ->capture_default_str();
  cmd->add_option("--reselect-layers", o->reselect_layers,
                  "tidal: re-selection layers, e.g. 13 or 13,20, or none; default: the model's "
                  "tidal_policy.json (tidal calibrate), else the layer at 13/32 of the depth");
  cmd->add_option("--granularity", o->granularity,
                  "tidal: per-query-head, per-kv-head or shared lists")
      ->capture_default_str();
  cmd->add_option("--agreement", o->agreement,
                  "tidal under --tp: how ranks agree on lists spanning them: approx (all-gather "
                  "each rank's top-k) or exact (all-reduce the scores)")
      ->capture_default_str();
  cmd->add_option("--correction-interval", o->correction_interval,
                  "every N decode steps recompute the last N tokens densely; 0: off")
      ->capture_default_str();
  cmd->add_flag("--stats", o->stats, "print attention statistics to stderr");
  std::vector<std::string> names;
  const std::vector<CLI::Option*> options = cmd->get_options();
  for (size_t i = first; i < options.size(); ++i) names.push_back(options[i]->get_name());
  return names;
}

// After parsing (the command's final callback): the attention flags given, for build_policy.
void note_attention_flags(const CLI::App* cmd, GenerateOptions* o) {
  for (const char* flag : {"--budget", "--sparse-start", "--reselect-layers", "--granularity",
                           "--correction-interval", "--agreement"}) {
    if (cmd->count(flag) > 0) o->attention_flags_given.push_back(flag);
  }
}

}  // namespace

void add_generate_command(CLI::App& app, GenerateOptions* o) {
  CLI::App* cmd = app.add_subcommand("generate", "stream a continuation of a prompt");
  auto* model = cmd->add_option("--model", o->model_dir,
                                "Hugging Face model directory; default: the embedded model");
  auto* preset = cmd->add_option("--preset", o->preset,
                                 "instead of --model: a preset with seeded random weights and no "
                                 "tokenizer (--prompt-ids, --print-ids): llama2-7b, llama3-8b, "
                                 "llama3.1-8b, llama-64l or tiny");
  preset->excludes(model);
  cmd->add_option("--weights-seed", o->weights_seed, "--preset: the weights' seed")
      ->check(seed_validator())
      ->capture_default_str();
  add_request_flags(cmd, o);
  o->engine.max_batch = 1;  // before the flags capture their defaults for --help
  add_engine_flags(cmd, &o->engine);
  add_device_flags(cmd, &o->device);
  add_parallel_flags(cmd, &o->parallel);
  cmd->final_callback([cmd, o] {
    note_attention_flags(cmd, o);
    o->weights_seed_given = cmd->count("--weights-seed") > 0;
  });
}

void add_serve_command(CLI::App& app, ServeOptions* o) {
  CLI::App* cmd = app.add_subcommand(
      "serve", "serve the gRPC API (tidal.v1.Inference) until SIGINT or SIGTERM");
  cmd->add_option("--model", o->model_dir,
                  "Hugging Face model directory; default: the embedded model");
  cmd->add_option("--listen", o->listen, "host:port to serve on (port 0: any free one)")
      ->capture_default_str();
  auto* preset = cmd->add_option("--preset", o->preset,
                                 "instead of --model: a preset with seeded random weights and no "
                                 "tokenizer (ids only; load benchmarks): llama2-7b, llama3-8b, "
                                 "llama3.1-8b, llama-64l or tiny");
  preset->excludes(cmd->get_option("--model"));
  cmd->add_option("--seed", o->seed, "--preset: the weights' seed")
      ->check(seed_validator())
      ->capture_default_str();
  auto* token = cmd->add_option("--auth-token", o->auth_token,
                                "refuse calls without metadata 'authorization: Bearer TOKEN'");
  auto* token_file =
      cmd->add_option("--auth-token-file", o->auth_token_file, "read the auth token from a file");
  token->excludes(token_file);
  cmd->add_option("--drain-seconds", o->drain_seconds,
                  "on SIGINT / SIGTERM, how long running requests may finish before they are "
                  "cancelled (at most 604800, a week)")
      ->capture_default_str();
  cmd->add_option("--max-queue", o->max_queue,
                  "requests queued or running at most; more are refused (UNAVAILABLE)")
      ->capture_default_str();
  cmd->add_flag("--quiet", o->quiet, "no log line per request");
  o->engine.max_batch = 32;  // before the flags capture their defaults for --help
  add_engine_flags(cmd, &o->engine);
  add_max_budget_flag(cmd, &o->engine);
  add_device_flags(cmd, &o->device);
  add_parallel_flags(cmd, &o->parallel);
  cmd->final_callback([cmd, o] {
    o->auth_token_given = cmd->count("--auth-token") > 0;
    o->auth_token_file_given = cmd->count("--auth-token-file") > 0;
    o->seed_given = cmd->count("--seed") > 0;
  });
}

void add_client_command(CLI::App& app, ClientOptions* o) {
  CLI::App* cmd = app.add_subcommand(
      "client", "stream a generation from a tidal server (or ask it for info, stats, ...)");
  cmd->add_option("--server", o->server, "host:port of the server")->capture_default_str();
  auto* token = cmd->add_option("--auth-token", o->auth_token, "the server's shared secret");
  auto* token_file =
      cmd->add_option("--auth-token-file", o->auth_token_file, "read the auth token from a file");
  token->excludes(token_file);
  cmd->add_option("--request-id", o->request_id, "the request's id (for --cancel from elsewhere)");
  cmd->add_option("--system", o->system, "--chat: a system message before the conversation");
  cmd->add_flag("--json", o->json,
                "print every response as one JSON line (--info, --server-stats: the reply on "
                "one line)");
  cmd->add_option("--timeout", o->timeout, "seconds per call, at most 604800 (a week); 0: none")
      ->capture_default_str();
  auto* info = cmd->add_flag("--info", o->info, "print the served model's description (JSON)");
  auto* stats = cmd->add_flag("--server-stats", o->server_stats, "print the server's statistics");
  auto* health =
      cmd->add_flag("--health", o->health, "check the server's health (exit 1 unless SERVING)");
  auto* cancel = cmd->add_option("--cancel", o->cancel, "cancel the live request with this id");
  auto* tokenize = cmd->add_flag("--tokenize", o->tokenize, "print the ids the prompt becomes");
  const std::vector<CLI::Option*> actions = {info, stats, health, cancel, tokenize};
  for (CLI::Option* a : actions) {
    for (CLI::Option* b : actions) {
      if (a != b) a->excludes(b);
    }
  }
  std::vector<std::string> generation = add_request_flags(cmd, &o->request);
  // Unlike generate's, the client's seed has no default: the server draws one per request.
  cmd->get_option("--seed")
      ->description(
          "sampling seed; default: a fresh one per request, drawn by the server and "
          "printed with the finish")
      ->default_str("");
  generation.push_back("--request-id");
  cmd->final_callback([cmd, o, generation] {
    note_attention_flags(cmd, &o->request);
    o->cancel_given = cmd->count("--cancel") > 0;
    o->system_given = cmd->count("--system") > 0;
    o->auth_token_given = cmd->count("--auth-token") > 0;
    o->auth_token_file_given = cmd->count("--auth-token-file") > 0;
    for (const std::string& flag : generation) {
      if (cmd->count(flag) > 0) o->generation_flags_given.push_back(flag);
    }
  });
}

void add_info_command(CLI::App& app, InfoOptions* o) {
  CLI::App* cmd = app.add_subcommand("info", "print a model's config, size and memory plan");
  auto* model = cmd->add_option("--model", o->model_dir, "Hugging Face model directory");
  auto* preset = cmd->add_option("--preset", o->preset,
                                 "llama2-7b, llama3-8b, llama3.1-8b, llama-64l or tiny");
  model->excludes(preset);
  o->engine.max_batch = 1;  // before the flags capture their defaults for --help
  add_engine_flags(cmd, &o->engine);
  add_max_budget_flag(cmd, &o->engine);
  add_device_flags(cmd, &o->device);
  cmd->add_option("--tp", o->parallel.tp,
                  "plan each rank of a job of this many tensor parallel ranks (no mpirun needed; "
                  "every rank on a device like this one)");
  cmd->add_option("--pp", o->parallel.pp, "... and this many pipeline stages");
  cmd->add_option("--memory-gib", o->memory_gib,
                  "plan against this much memory on each device (GiB) instead of what this one "
                  "has free: a GPU this machine lacks, e.g. 141 for an H200 (with --dtype bf16)")
      ->check(CLI::Range(0.0, 1.0e6));
}

void add_bench_command(CLI::App& app, BenchOptions* o) {
  CLI::App* cmd = app.add_subcommand(
      "bench", "decode latency of presets with random weights, against the bandwidth floor");
  cmd->add_option("--preset", o->presets,
                  "llama2-7b, llama3-8b, llama3.1-8b, llama-64l, or tiny (a CPU smoke test)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--context", o->contexts, "context lengths, e.g. 10K,32K,100K (K = 1000)")
      ->capture_default_str();
  cmd->add_option("--batch", o->batches, "batch sizes, e.g. 1,4,16")->capture_default_str();
  cmd->add_option("--policy", o->policies, "full, quest, tidal")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--budget", o->budgets, "sparse budgets K (quest and tidal)")
      ->capture_default_str();
  cmd->add_option("--granularity", o->granularities, "tidal: per-query-head, per-kv-head, shared")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--agreement", o->agreements,
                  "tidal under --tp: approx, exact or both (approx,exact), for lists whose heads "
                  "span ranks (shared, and per-kv-head when KV heads are replicated)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--sparse-start", o->sparse_start, "tidal: first selection layer")
      ->capture_default_str();
  cmd->add_option("--reselect-layers", o->reselect_layers,
                  "tidal: re-selection layers (e.g. 13), none; default: the depth's");
  cmd->add_option("--policy-file", o->policy_file,
                  "tidal: the first selection and re-selection layers of a tidal_policy.json "
                  "(written by tidal calibrate), unless --sparse-start / --reselect-layers is given");
  cmd->add_option("--steps", o->steps, "timed decode steps per configuration")
      ->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "untimed decode steps first")->capture_default_str();
  cmd->add_flag("--prefill", o->prefill,
                "prefill random prompts (and time it) instead of filling the KV cache randomly");
  cmd->add_flag("!--no-breakdown", o->breakdown, "skip the per-layer-role attention timing");
  cmd->add_option("--graph-replays", o->graph_replays,
                  "replays of the last step's CUDA graph, back to back, for graph_ms (0: none; at "
                  "most 10000)")
      ->capture_default_str();
  cmd->add_flag("--mixed", o->mixed,
                "one batch mixing every policy variant (one sequence each) instead of one batch "
                "per variant");
  cmd->add_option("--page-size", o->page_size, "KV cache page size")->capture_default_str();
  cmd->add_option("--prefill-chunk", o->prefill_chunk, "prompt tokens per prefill step")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "weights, KV cache and prompts")
      ->check(seed_validator())
      ->capture_default_str();
  cmd->add_option("--json", o->json_path, "also write the table as JSON to this file");
  cmd->add_option("--csv", o->csv_path, "also write the table as CSV to this file");
  cmd->add_option("--kernel-trace", o->kernel_trace_path,
                  "write every kernel of each row's graph replays (CUPTI) to this file as a Chrome "
                  "trace, and summarize them under the row (GPU, one rank; the steps are timed "
                  "with the tracing on)");
  add_device_flags(cmd, &o->device);
  add_parallel_flags(cmd, &o->parallel);
  cmd->final_callback([cmd, o] {
    o->layers_given = cmd->count("--sparse-start") > 0 || cmd->count("--reselect-layers") > 0;
  });
}

Status apply_device_flags(const DeviceFlags& f, engine::EngineConfig* e) {
  if (f.device == "auto") {
    e->device = cuda_available() ? Device{DeviceKind::kCuda, 0} : Device{};
  } else if (f.device == "cpu") {
    e->device = Device{};
  } else if (f.device == "cuda" || f.device.rfind("cuda:", 0) == 0) {
    int index = 0;
    if (f.device.size() > 5) {
      const std::string n = f.device.substr(5);
      if (n.empty() || n.size() > 3 || n.find_first_not_of("0123456789") != std::string::npos) {
        return invalid_argument("--device: '" + f.device + "' is not cuda:N");
      }
      index = std::stoi(n);
    }
    if (index >= cuda_device_count()) {
      return unavailable("--device " + f.device + ": " + std::to_string(cuda_device_count()) +
                         " CUDA devices are visible" +
                         (TIDAL_WITH_CUDA ? "" : " (this build has no CUDA support)"));
    }
    e->device = Device{DeviceKind::kCuda, index};
  } else {
    return invalid_argument("--device must be auto, cpu, cuda or cuda:N (got '" + f.device + "')");
  }
  const bool gpu = e->device.kind == DeviceKind::kCuda;
  if (f.dtype == "auto") {
    e->dtype = gpu ? DType::kBF16 : DType::kF32;
  } else if (f.dtype == "f32") {
    e->dtype = DType::kF32;
  } else if (f.dtype == "f16") {
    e->dtype = DType::kF16;
  } else if (f.dtype == "bf16") {
    e->dtype = DType::kBF16;
  } else {
    return invalid_argument("--dtype must be auto, f32, f16 or bf16 (got '" + f.dtype + "')");
  }
  if (f.kv_dtype == "fp8") {
    e->kv_dtype = engine::KvDtype::kFp8;
  } else if (f.kv_dtype == "auto" || f.kv_dtype == dtype_name(e->dtype)) {
    e->kv_dtype = engine::KvDtype::kActivation;
  } else if (f.kv_dtype == "f32" || f.kv_dtype == "f16" || f.kv_dtype == "bf16") {
    return invalid_argument("--kv-dtype " + f.kv_dtype +
                            ": the KV cache holds the activations' "
                            "dtype (" +
                            dtype_name(e->dtype) + ") or fp8");
  } else {
    return invalid_argument("--kv-dtype must be auto, f32, f16, bf16 or fp8 (got '" + f.kv_dtype +
                            "')");
  }
  e->cuda_graphs = !f.eager;
  if (f.threads < 1 || f.threads > kMaxThreads) {
    return invalid_argument("--threads must be in [1, " + std::to_string(kMaxThreads) + "] (got " +
                            std::to_string(f.threads) + ")");
  }
  set_cpu_threads(f.threads);
  return ok_status();
}

Status check_max_budget_flag(const engine::EngineConfig& e) {
  // EngineConfig::validate's range, by the flag's name (its message names the field, and
  // name_flags leaves max_budget alone: generate has no such flag).
  if (e.max_budget < 2 || e.max_budget > engine::kMaxContext) {
    return invalid_argument("--max-budget must be in [2, " + std::to_string(engine::kMaxContext) +
                            "] (the largest sparse budget a request may ask), got " +
                            std::to_string(e.max_budget));
  }
  return ok_status();
}

Status check_seconds(double seconds, const char* flag) {
  if (seconds >= 0 && seconds <= kMaxFlagSeconds) return ok_status();  // false for NaN
  char got[32];
  std::snprintf(got, sizeof(got), "%g", seconds);
  return invalid_argument(std::string(flag) + " must be a number of seconds in [0, " +
                          std::to_string(int64_t(kMaxFlagSeconds)) + "] (a week), got " + got);
}

Status check_auth_token_flags(const std::string& token, bool token_given, const std::string& file,
                              bool file_given, const char* remedy) {
  if (token_given && token.empty()) {
    return invalid_argument(std::string("--auth-token is empty: ") + remedy);
  }
  if (file_given && file.empty()) {
    return invalid_argument("--auth-token-file needs a path (got an empty one)");
  }
  return ok_status();
}

Status read_auth_token_file(const std::string& path, std::string* token) {
  std::string text;
  TIDAL_RETURN_IF_ERROR(read_file(path, &text).with_context("--auth-token-file"));
  *token = text.substr(0, text.find_first_of("\r\n"));
  if (token->empty()) return invalid_argument("--auth-token-file: the file's first line is empty");
  return ok_status();
}

namespace {

// note_once for a value of any type; `shown`: the value in the message.
template <typename T>
Status note_value_once(const T& v, const std::string& shown, const std::string& item,
                       const char* flag, std::map<T, std::string>* seen) {
  const auto [it, added] = seen->emplace(v, item);
  if (added) return ok_status();
  return invalid_argument(std::string(flag) + ": " + shown + " is listed twice" +
                          (it->second == item ? "" : " ('" + it->second + "' and '" + item + "')"));
}

}  // namespace

Status note_once(int64_t v, const std::string& item, const char* flag,
                 std::map<int64_t, std::string>* seen) {
  return note_value_once(v, std::to_string(v), item, flag, seen);
}

Status note_once(const std::string& v, const std::string& item, const char* flag,
                 std::map<std::string, std::string>* seen) {
  return note_value_once(v, v, item, flag, seen);
}

Status parse_count_list(const std::string& text, const char* flag, std::vector<int64_t>* out) {
  std::string normalized = text;
  for (char& c : normalized) c = c == ',' ? ' ' : c;
  std::istringstream in(normalized);
  std::string item;
  std::map<int64_t, std::string> seen;
  while (in >> item) {
    int64_t scale = 1;
    std::string digits = item;
    const char last = digits.empty() ? '\0' : digits.back();
    if (last == 'K' || last == 'k') scale = 1000;
    if (last == 'M' || last == 'm') scale = 1000000;
    if (scale > 1) digits.pop_back();
    if (digits.empty() || digits.size() > 9 ||
        digits.find_first_not_of("0123456789") != std::string::npos || std::stoll(digits) < 1) {
      return invalid_argument(std::string(flag) + ": '" + item +
                              "' is not a count: 1 to 999999999, with an optional K (x1000) or M "
                              "(x1000000), e.g. 32000 or 32K");
    }
    out->push_back(std::stoll(digits) * scale);
    TIDAL_RETURN_IF_ERROR(note_once(out->back(), item, flag, &seen));
  }
  if (out->empty()) return invalid_argument(std::string(flag) + " lists no value");
  return ok_status();
}

void add_tokenize_command(CLI::App& app, TokenizeOptions* o) {
  CLI::App* cmd = app.add_subcommand("tokenize", "print the token ids of a text (or --decode)");
  auto* model = cmd->add_option("--model", o->model_dir, "model directory holding a tokenizer");
  auto* file =
      cmd->add_option("--tokenizer", o->tokenizer_file, "tokenizer.json or tokenizer.model");
  model->excludes(file);
  auto* text = cmd->add_option_function<std::string>(
      "--text",
      [o](const std::string& t) {
        o->text = t;
        o->text_given = true;
      },
      "the text (with --decode: ids)");
  auto* in = cmd->add_option("--file", o->file, "read the text from a file");
  text->excludes(in);
  cmd->add_flag("--no-bos", o->no_bos, "do not prepend the BOS token");
  cmd->add_flag("--decode", o->decode, "turn ids back into text");
}

CLI::Validator seed_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        uint64_t v = 0;
        return parse_u64(s, &v) ? std::string()
                                : "'" + s + "' is not a seed (an integer in [0, " +
                                      std::to_string(UINT64_MAX) + "])";
      },
      "");
}

bool parse_u64(const std::string& text, uint64_t* out) {
  if (text.empty() || text.size() > 20 ||
      text.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  uint64_t v = 0;
  for (char c : text) {
    const uint64_t digit = uint64_t(c - '0');
    if (v > (UINT64_MAX - digit) / 10) return false;  // would wrap
    v = v * 10 + digit;
  }
  *out = v;
  return true;
}

Status check_prompt_flags(const GenerateOptions& o) {
  const int given = int(o.prompt_given) + int(o.prompt_file_given) + int(o.prompt_ids_given);
  if (given > 1) return invalid_argument("give one of --prompt, --prompt-file, --prompt-ids");
  if (o.prompt_file_given && o.prompt_file.empty()) {
    return invalid_argument("--prompt-file needs a path (got an empty one)");
  }
  if (o.prompt_ids_given && o.prompt_ids.empty()) {
    return invalid_argument("--prompt-ids needs token ids (got an empty list)");
  }
  return ok_status();
}

Status parse_id_list(const std::string& text, std::vector<int32_t>* ids) {
  std::string normalized = text;
  for (char& c : normalized) {
    if (c == ',' || c == '\n' || c == '\t') c = ' ';
  }
  std::istringstream in(normalized);
  std::string item;
  while (in >> item) {
    size_t used = 0;
    long long v = 0;
    bool ok = !item.empty() && item.find_first_not_of("0123456789") == std::string::npos &&
              item.size() <= 10;
    if (ok) {
      v = std::stoll(item, &used);
      ok = used == item.size() && v <= INT32_MAX;
    }
    if (!ok) return invalid_argument("'" + item + "' is not a token id (a non-negative integer)");
    ids->push_back(int32_t(v));
  }
  return ok_status();
}

}  // namespace tidal::launch

namespace tidal::launch {

Status build_policy(const GenerateOptions& o, model::AttentionPolicy* p) {
  TIDAL_RETURN_IF_ERROR(
      model::parse_attention_kind(o.attention, &p->kind).with_context("--attention"));
  // Which policies read each flag; a flag the chosen one ignores would silently do nothing.
  for (const std::string& flag : o.attention_flags_given) {
    const bool tidal_only = flag != "--budget" && flag != "--correction-interval";
    const bool applies = tidal_only ? p->kind == model::AttentionKind::kTidal
                                    : p->kind != model::AttentionKind::kFull;
    if (!applies) {
      return invalid_argument(flag + " has no effect with --attention " + o.attention + " (it " +
                              "applies to " + (tidal_only ? "tidal" : "tidal and quest") + ")");
    }
  }
  TIDAL_RETURN_IF_ERROR(
      model::parse_granularity(o.granularity, &p->tidal.granularity).with_context("--granularity"));
  TIDAL_RETURN_IF_ERROR(
      model::parse_agreement(o.agreement, &p->tidal.agreement).with_context("--agreement"));
  p->tidal.budget = o.budget;
  p->tidal.sparse_start = o.sparse_start;
  p->quest.budget = o.budget;
  p->quest.page_size = o.engine.page_size;
  p->correction_interval = o.correction_interval;
  // The flags' own values, before a model's tidal_policy.json sets the layers (request_policy):
  // the file's check would otherwise report these as the file's error. The same rules as
  // AttentionPolicy::validate, which checks the rest against the model.
  if (o.correction_interval < 0) {
    return invalid_argument("--correction-interval must be >= 0 (0: off), got " +
                            std::to_string(o.correction_interval));
  }
  if (p->kind == model::AttentionKind::kTidal && o.budget < 2) {
    return invalid_argument(
        "tidal --budget must be >= 2 (the current token and at least one selected), got " +
        std::to_string(o.budget));
  }
  if (o.reselect_layers == "none") {
    p->tidal.reselect_layers = std::vector<int64_t>();
  } else if (!o.reselect_layers.empty()) {
    std::vector<int32_t> layers;
    TIDAL_RETURN_IF_ERROR(
        parse_id_list(o.reselect_layers, &layers).with_context("--reselect-layers"));
    p->tidal.reselect_layers = std::vector<int64_t>(layers.begin(), layers.end());
  }
  return ok_status();
}

}  // namespace tidal::launch
