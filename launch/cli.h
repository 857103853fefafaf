// SPDX-License-Identifier: Apache-2.0
// The tidal command's flags, turned into plain option structs (the only place flags and
// environment variables are read), and the subcommands that run on them.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/attention_policy.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/generate.h"
#include "runtime/status.h"

namespace tidal::launch {

// The ranks an MPI launcher (mpirun) started, from its environment; one rank of one without a
// launcher. Read by launcher_ranks() before MPI starts (only --tp/--pp start it).
struct LauncherRanks {
  int size = 1;
  int rank = 0;
  // Every rank was given the same command line: mpirun started one program, not several
  // (`mpirun -np 1 A : -np 1 B`). False where the launcher does not say (only OpenMPI's does):
  // ranks may then have different command lines.
  bool one_command = false;
};
LauncherRanks launcher_ranks();

// Where `tidal generate` finds a model when --model is absent.
struct DefaultModel {
  std::string dir;  // the repository's trained model, when present
};

// Where and in which precision the engine runs (turned into EngineConfig fields by
// apply_device_flags).
struct DeviceFlags {
  std::string device = "auto";  // auto (a GPU when one is visible), cpu, cuda or cuda:N
  std::string dtype = "auto";   // auto (bf16 on a GPU, f32 on the CPU), f32, f16 or bf16
  // The KV cache: auto (the activations' dtype), f32 / f16 / bf16 (that dtype: must be --dtype's),
  // or fp8 (e4m3 with per-row scales).
  std::string kv_dtype = "auto";
  bool eager = false;  // GPU: launch every op each step instead of replaying graphs
  int threads = 0;     // CPU path threads; Default (0): the machine's cores
};

// Tensor / pipeline parallelism under mpirun (launch/parallel_run.cc). Unset (0) both: one
// process. Either set: this process is one rank of an mpirun job of tp x pp ranks.
struct ParallelFlags {
  int tp = 0;  // ranks splitting each layer's heads and FFN columns; 0: 1 (or no job)
  int pp = 0;  // pipeline stages, contiguous layer ranges; 0: 1 (or no job)
  bool requested() const { return tp > 0 || pp > 0; }
};

struct GenerateOptions {
  std::string model_dir;  // empty: the embedded default
  // Instead of a model directory: a preset's shape with random weights drawn from weights_seed
  // and no tokenizer (--prompt-ids and --print-ids); under --tp/--pp every layout is one rank's
  // model (launch/presets.h). Empty: none.
  std::string preset;
  uint64_t weights_seed = 1;
  bool weights_seed_given = false;  // without --preset it has no effect: refused
  std::string prompt;     // text (tokenized, BOS added)
  bool prompt_given = false;
  std::string prompt_file;
  bool prompt_file_given = false;  // an empty path is an error, not the flag's absence
  std::string prompt_ids;  // "1,2,3": used as-is
  bool prompt_ids_given = false;  // an empty list is an error, not the flag's absence
  bool chat = false;       // wrap the prompt in the Llama-3 chat template
  bool print_ids = false;  // print generated ids on one line instead of text
  bool stats = false;      // print attention statistics to stderr
  // Attention policy flags, turned into a model::AttentionPolicy by build_policy().
  std::string attention = "full";  // full | tidal | quest
  int64_t budget = 256;            // tokens (tidal: per list; quest: per head)
  int64_t sparse_start = 2;
  std::string reselect_layers;  // "13", "13,20", "none"; empty: the depth's default
  std::string granularity = "per-query-head";
  std::string agreement = "approx";  // approx | exact: lists whose heads span TP ranks
  int64_t correction_interval = 0;
  // The attention flags given on the command line ("--budget", ...): one that has no effect
  // under the chosen --attention is refused.
  std::vector<std::string> attention_flags_given;
  engine::SamplingParams sampling;
  engine::StopConditions stop;
  engine::EngineConfig engine;
  DeviceFlags device;
  ParallelFlags parallel;
};

// `tidal serve`: the gRPC coordinator (launch/serve.cc).
struct ServeOptions {
  std::string model_dir;  // empty: the embedded default
  // Instead of a model directory: a preset's shape with seeded random weights and no tokenizer
  // (prompts as ids only), for load benchmarks (launch/presets.h). Empty: none.
  std::string preset;
  uint64_t seed = 1;  // --preset's weights
  bool seed_given = false;  // without --preset it has no effect: refused
  std::string listen = "127.0.0.1:50051";
  std::string auth_token;       // the shared secret calls must carry; empty: none
  std::string auth_token_file;  // read the secret from a file (its first line)
  double drain_seconds = 30;    // on SIGINT / SIGTERM: how long live requests may finish
  int64_t max_queue = 4096;     // live requests at most; more are refused (UNAVAILABLE)
  bool quiet = false;           // no per-request log lines
  std::string version;          // reported by GetModelInfo (set by main)
  // --auth-token / --auth-token-file was given: an empty one is refused, not taken as "none".
  bool auth_token_given = false;
  bool auth_token_file_given = false;
  engine::EngineConfig engine;  // max_budget: --max-budget (serve's, and info's to plan it)
  DeviceFlags device;
  ParallelFlags parallel;
};

// `tidal client`: streams a generation from a server, or asks it something else
// (launch/client.cc). The prompt, stop, sampling and attention flags are generate's, except that
// without --seed no seed is sent (the server draws one per request).
struct ClientOptions {
  std::string server = "127.0.0.1:50051";
  std::string auth_token;
  std::string auth_token_file;
  std::string request_id;  // empty: the server picks one
  std::string system;      // --chat: a system message first
  bool json = false;       // every response as one JSON line on stdout
  double timeout = 0;      // seconds per call (at most a week); 0: none
  // Instead of generating:
  bool info = false;          // GetModelInfo
  bool server_stats = false;  // GetStats
  bool health = false;        // grpc.health.v1 Check
  std::string cancel;         // Cancel this request id
  bool tokenize = false;      // Tokenize the prompt
  GenerateOptions request;    // prompt, stop, sampling and attention flags
  // The flags given, for run_client's checks: an empty --cancel id, --system without --chat,
  // and a generation's flags (generate's request flags, --request-id) beside a call that does
  // not generate are refused, as flags without effect.
  bool cancel_given = false;
  bool system_given = false;
  std::vector<std::string> generation_flags_given;
  // An empty --auth-token, --auth-token-file path or first line of the file is refused, not sent
  // as no token.
  bool auth_token_given = false;
  bool auth_token_file_given = false;
};

struct InfoOptions {
  std::string model_dir;
  std::string preset;
  engine::EngineConfig engine;
  DeviceFlags device;
  ParallelFlags parallel;  // requested: plan every rank of that layout (no job is started)
  // Plan against this much memory on each device, GiB, instead of what this one has free (a GPU
  // this machine does not have); 0: this device's.
  double memory_gib = 0;
};

// `tidal bench`: decode latency against the bandwidth floor (launch/bench.cc).
struct BenchOptions {
  std::vector<std::string> presets = {"llama2-7b", "llama3-8b"};
  std::string contexts = "10K,32K,100K";  // K = 1000 tokens, M = 1000000
  std::string batches = "1";
  std::vector<std::string> policies = {"full", "quest", "tidal"};
  std::string budgets = "256,2048";
  std::vector<std::string> granularities = {"per-query-head", "per-kv-head"};
  // tidal under --tp, lists whose heads span ranks (shared; per-kv-head of replicated KV heads):
  // a row per agreement. Per-query-head lists lie on one rank and take the first only.
  std::vector<std::string> agreements = {"approx"};
  int64_t sparse_start = 2;
  std::string reselect_layers;  // empty: the depth's default
  // tidal's layers from a tidal_policy.json (tidal calibrate's; presets have no model directory),
  // unless --sparse-start or --reselect-layers is given (layers_given). Empty: none.
  std::string policy_file;
  bool layers_given = false;
  int64_t steps = 100;          // timed decode steps per configuration
  int64_t warmup = 10;          // untimed decode steps first
  bool prefill = false;         // prefill real (random) prompts and time it, not random KV
  bool breakdown = true;        // one extra eager step timing each layer's attention by role
  // The last step's graph replayed back to back: graph_ms. [0, engine::kMaxGraphReplays]; 0: none
  int64_t graph_replays = 20;
  bool mixed = false;           // one batch holding every variant (one sequence each)
  int64_t page_size = 16;
  int64_t prefill_chunk = 4096;
  uint64_t seed = 1;
  std::string json_path, csv_path;
  // A Chrome trace of the kernels of every row's graph replays (CUPTI; GPU, one rank), and a
  // summary under each row. Empty: none.
  std::string kernel_trace_path;
  DeviceFlags device;
  ParallelFlags parallel;
};

struct TokenizeOptions {
  std::string model_dir;
  std::string tokenizer_file;
  std::string text;
  bool text_given = false;
  std::string file;
  bool no_bos = false;
  bool decode = false;  // the input is ids; print the text
};

// Registers the subcommands and their flags on `app`, writing into the option structs.
void add_generate_command(CLI::App& app, GenerateOptions* opts);
void add_info_command(CLI::App& app, InfoOptions* opts);
void add_tokenize_command(CLI::App& app, TokenizeOptions* opts);
void add_bench_command(CLI::App& app, BenchOptions* opts);
void add_serve_command(CLI::App& app, ServeOptions* opts);
void add_client_command(CLI::App& app, ClientOptions* opts);

Status run_generate(const GenerateOptions& opts, const DefaultModel& defaults);
// generate's flags that need no model (--weights-seed needs --preset; the prompt flags; the
// sampling and stop settings), checked before anything loads (on every rank of a job); errors
// name the flag.
Status check_generate_flags(const GenerateOptions& opts);
// The part of `generate` after loading: tokenizer, prompt, generation, output (`dir`: the model's).
Status generate_with(const GenerateOptions& opts, const std::string& dir, engine::Engine& engine);
// generate and bench as one rank of an mpirun job (launch/parallel_run.cc). Only rank 0 prints;
// the others return an error with an empty message when rank 0 reports the failure.
Status run_generate_parallel(const GenerateOptions& opts, const DefaultModel& defaults);
// Under a launcher of more than one rank, a command that is not a job (`parallel`: its --tp/--pp,
// neither given; null: a command without them) would run whole on every rank, each printing its
// own output: invalid_argument, on every rank (main says who prints it). Ok otherwise.
Status check_launcher(const LauncherRanks& launcher, const std::string& command,
                      const ParallelFlags* parallel);
Status run_bench_parallel(const BenchOptions& opts);
// run_bench on one rank of a job (null: one process).
Status run_bench_on(const BenchOptions& opts, const engine::Distributed* dist);
// `serve`: loads the model and serves until SIGINT / SIGTERM (then drains, and returns ok). A
// signal while it loads ends the process at once (launch/stop_signals.h).
Status run_serve(const ServeOptions& opts, const DefaultModel& defaults);
class StopSignals;
// The part of `serve` after loading (one rank, or rank 0 of an mpirun job): `signals` were made
// before any thread was started; serving starts here (StopSignals::serving).
Status serve_with(const ServeOptions& opts, const std::string& dir, engine::Engine& engine,
                  StopSignals& signals);
Status run_serve_parallel(const ServeOptions& opts, const DefaultModel& defaults,
                          StopSignals& signals);
// --max-budget (serve, info) in EngineConfig::validate's range, the message naming the flag.
Status check_max_budget_flag(const engine::EngineConfig& e);
// The flags serve_with reads that need no model (--max-queue, --auth-token, --drain-seconds;
// --seed needs --preset), and --max-budget, checked before a model loads; errors name the flag.
Status check_serve_flags(const ServeOptions& opts);
Status run_client(const ClientOptions& opts);
// --model, else the embedded default (saying so on stderr).
Status model_dir_or_default(const std::string& model_dir, const DefaultModel& defaults,
                            std::string* dir);
Status run_info(const InfoOptions& opts);
Status run_tokenize(const TokenizeOptions& opts);
Status run_bench(const BenchOptions& opts);

// Resolves --device / --dtype / --kv-dtype / --eager into the engine config and sets the CPU path's
// thread count (--threads, process-wide); errors name the flag.
Status apply_device_flags(const DeviceFlags& flags, engine::EngineConfig* config);
// Flags in seconds (client --timeout, serve --drain-seconds) take a finite value in
// [0, kMaxFlagSeconds]: a week covers any call or drain, and inf, NaN or 1e13 would overflow the
// clocks' deadlines (or silently mean "none").
constexpr double kMaxFlagSeconds = 7 * 24 * 3600;
// Errors name `flag` and the value: "--timeout must be ... in [0, 604800] (a week), got inf".
Status check_seconds(double seconds, const char* flag);
// --auth-token or --auth-token-file given but empty (serve, client) is refused, not taken as the
// flag's absence: an empty secret would mean no authentication. `remedy` ends the --auth-token
// message (what to give instead).
Status check_auth_token_flags(const std::string& token, bool token_given, const std::string& file,
                              bool file_given, const char* remedy);
// The secret in the first line of an --auth-token-file (serve, client); a file whose first line
// is empty is refused: it would mean no authentication.
Status read_auth_token_file(const std::string& path, std::string* token);
// Notes `v` as given by the list item `item`; a value given before (by `item` or another) is an
// error naming it: its rows would run and print twice. A name is noted by its canonical spelling
// ("per-kv-head" for "per_kv_head").
Status note_once(int64_t v, const std::string& item, const char* flag,
                 std::map<int64_t, std::string>* seen);
Status note_once(const std::string& v, const std::string& item, const char* flag,
                 std::map<std::string, std::string>* seen);
// "10K,32K,100K" -> {10000, 32000, 100000}; K = 1000, M = 1000000. Errors name `flag`; a value
// listed twice ("10K,10000") is one: each value is a row.
Status parse_count_list(const std::string& text, const char* flag, std::vector<int64_t>* out);

// At most one of --prompt, --prompt-file and --prompt-ids (generate, client), a given
// --prompt-file names a file, and a given --prompt-ids is not empty.
Status check_prompt_flags(const GenerateOptions& opts);

// "1,2,3" or "1 2 3" -> ids; errors name the bad item.
Status parse_id_list(const std::string& text, std::vector<int32_t>* ids);

// The attention policy the flags ask for (validated later against the model). Refuses a flag
// that has no effect under the chosen --attention (--granularity with full, ...), and the values
// no model takes (tidal --budget below 2, a negative --correction-interval).
Status build_policy(const GenerateOptions& opts, model::AttentionPolicy* policy);

// A strict decimal unsigned 64-bit integer: no sign, no spaces, no wrap-around.
bool parse_u64(const std::string& text, uint64_t* out);
// For every seed flag: the whole u64 range, and nothing outside it (CLI11 alone would wrap "-1"
// to 2^64 - 1).
CLI::Validator seed_validator();

}  // namespace tidal::launch
