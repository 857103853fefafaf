// SPDX-License-Identifier: Apache-2.0
// serve_bench: load on the coordinator. N concurrent clients, each with its own channel, send
// generation requests one after another (prompt lengths drawn from --prompt-mix, random ids in the
// vocabulary, --max-new-tokens each with EOS ignored) to a running `tidal serve` (--server) or to
// one started in this process (--model). Per client count it reports time to first token,
// inter-token latency and end-to-end latency (p50 / p99, measured by the clients) and the
// throughput. It validates as it goes: every stream must end with its final message, status OK
// and exactly the tokens asked; afterwards the server must hold no request and no KV page.
// `#wrong` counts the failures; the binary exits 1 when a row has any. --duration turns it into a
// soak: clients loop until the time is up. Before each row's clock starts, every client connects
// and sends --warmup-requests untimed (but validated) requests at the row's concurrency.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "benchmarks/common/stats.h"
#include "benchmarks/common/table.h"
#include "rpc/client.h"
#include "rpc/service.h"
#include "runtime/thread_pool.h"

namespace tidal::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string server;     // host:port of a running server
  std::string model_dir;  // or: serve this model in-process
  engine::EngineConfig engine;
  std::string device = "cpu";
  int threads = 0;  // CPU path threads of the in-process server; 0: the machine's cores
  std::string auth_token;
  std::string clients = "32,64";
  int64_t requests = 4;                              // per client (ignored with --duration)
  int64_t warmup_requests = 1;  // per client, untimed, before each row's timed requests
  double duration = 0;                               // seconds: soak; clients loop until it is up
  std::string prompt_mix = "16:4,64:3,256:2,400:1";  // length:weight,...
  int64_t max_new_tokens = 32;
  std::string attention = "full";  // full, tidal, quest, or mixed (each request the next one)
  int64_t budget = 64;
  int64_t correction_interval = 0;
  float temperature = 0.8f;
  uint64_t seed = 1;
  std::string json_path, csv_path;
};

struct MixEntry {
  int64_t length;
  double weight;
};

Status parse_mix(const std::string& text, std::vector<MixEntry>* out) {
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    const size_t colon = item.find(':');
    try {
      MixEntry e{std::stoll(item.substr(0, colon)),
                 colon == std::string::npos ? 1.0 : std::stod(item.substr(colon + 1))};
      if (e.length < 1 || !(e.weight > 0)) throw std::invalid_argument(item);
      out->push_back(e);
    } catch (const std::exception&) {
      return invalid_argument("--prompt-mix: '" + item + "' is not LENGTH:WEIGHT");
    }
  }
  if (out->empty()) return invalid_argument("--prompt-mix lists nothing");
  return ok_status();
}

// What one client saw.
struct ClientLog {
  std::vector<double> ttft, itl, e2e;  // seconds
  int64_t requests = 0, tokens = 0, prompt_tokens = 0, wrong = 0;
  std::string first_error;
};

v1::GenerateRequest make_request(const Options& o, const std::vector<MixEntry>& mix, int64_t vocab,
                                 std::mt19937_64& rng, int64_t serial) {
  std::vector<double> weights;
  for (const MixEntry& m : mix) weights.push_back(m.weight);
  std::discrete_distribution<size_t> pick(weights.begin(), weights.end());
  std::uniform_int_distribution<int32_t> token(3, int32_t(vocab - 1));
  v1::GenerateRequest r;
  const int64_t len = mix[pick(rng)].length;
  for (int64_t i = 0; i < len; ++i) r.mutable_ids()->add_ids(token(rng));
  r.mutable_sampling()->set_temperature(o.temperature);
  r.mutable_sampling()->set_seed(rng());
  r.mutable_stop()->set_max_new_tokens(o.max_new_tokens);
  r.mutable_stop()->set_ignore_eos(true);
  static const char* kinds[] = {"full", "tidal", "quest"};
  const std::string kind = o.attention == "mixed" ? kinds[serial % 3] : o.attention;
  r.mutable_attention()->set_kind(kind);
  if (kind != "full") {
    r.mutable_attention()->set_budget(o.budget);
    r.set_correction_interval(o.correction_interval);
  }
  return r;
}

// One request, timed and checked.
void run_request(rpc::Client& client, const v1::GenerateRequest& req, ClientLog* log) {
  const auto t0 = Clock::now();
  auto last = t0;
  int64_t got = 0;
  bool first = true, final = false;
  const grpc::Status st = client.generate(req, [&](const v1::GenerateResponse& m) {
    const auto now = Clock::now();
    const int n = m.token_ids_size();
    if (n > 0) {
      const double gap = std::chrono::duration<double>(now - last).count();
      if (first) {
        log->ttft.push_back(gap);
        for (int i = 1; i < n; ++i) log->itl.push_back(0.0);  // arrived with the first
        first = false;
      } else {
        for (int i = 0; i < n; ++i) log->itl.push_back(gap / n);
      }
      last = now;
      got += n;
    }
    if (m.has_final()) {
      final = m.final().usage().generated_tokens() == got &&
              m.final().finish() == v1::FINISH_REASON_LENGTH;
    }
    return true;
  });
  log->e2e.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  log->requests += 1;
  log->tokens += got;
  log->prompt_tokens += req.ids().ids_size();
  if (!st.ok() || !final || got != req.stop().max_new_tokens()) {
    log->wrong += 1;
    if (log->first_error.empty()) {
      log->first_error = st.ok() ? "stream ended with " + std::to_string(got) + " tokens, no final"
                                 : st.error_message();
    }
  }
}

double quantile_ms(std::vector<double> v, double q) {
  if (v.empty()) return NAN;  // printed as "-"
  std::sort(v.begin(), v.end());
  return 1e3 * quantile_sorted(v, q);
}

// One row: `clients` clients until each sent o.requests (or o.duration passed). Each client first
// connects and sends o.warmup_requests untimed requests at the row's concurrency (the server
// captures its step graphs for the batch sizes this load reaches), then waits for the others; the
// clock starts, and the server's counters are read, once the last one is ready.
Status run_load(const Options& o, const std::string& target, const std::vector<MixEntry>& mix,
                int64_t vocab, int64_t clients, Table* table) {
  rpc::ClientOptions co;
  co.auth_token = o.auth_token;
  rpc::Client probe(target, co);
  v1::Stats before;
  std::vector<ClientLog> logs(static_cast<size_t>(clients)), warm(static_cast<size_t>(clients));
  std::vector<std::thread> threads;
  std::atomic<int64_t> ready{0};
  std::atomic<bool> go{false}, stats_ok{false};
  Clock::time_point t0;  // written by the last client to be ready, before `go`
  const double duration = o.duration;
  for (int64_t c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      rpc::Client client(target, co);
      client.wait_ready(30);
      std::mt19937_64 rng(o.seed * 1000003 + uint64_t(c));
      for (int64_t i = 0; i < o.warmup_requests; ++i) {
        run_request(client, make_request(o, mix, vocab, rng, c + i), &warm[size_t(c)]);
      }
      if (ready.fetch_add(1) + 1 == clients) {
        stats_ok = probe.stats(&before).ok();
        t0 = Clock::now();
        go.store(true, std::memory_order_release);
      }
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      if (!stats_ok) return;
      for (int64_t i = 0;; ++i) {
        const bool more = duration > 0
                              ? std::chrono::duration<double>(Clock::now() - t0).count() < duration
                              : i < o.requests;
        if (!more) break;
        run_request(client, make_request(o, mix, vocab, rng, c + i), &logs[size_t(c)]);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!stats_ok) return unavailable("GetStats failed on " + target);
  ClientLog all;
  for (const ClientLog& l : warm) {  // untimed, but validated like the rest
    all.wrong += l.wrong;
    if (all.first_error.empty() && !l.first_error.empty()) {
      all.first_error = "warm-up: " + l.first_error;
    }
  }
  for (const ClientLog& l : logs) {
    all.ttft.insert(all.ttft.end(), l.ttft.begin(), l.ttft.end());
    all.itl.insert(all.itl.end(), l.itl.begin(), l.itl.end());
    all.e2e.insert(all.e2e.end(), l.e2e.begin(), l.e2e.end());
    all.requests += l.requests;
    all.tokens += l.tokens;
    all.prompt_tokens += l.prompt_tokens;
    all.wrong += l.wrong;
    if (all.first_error.empty()) all.first_error = l.first_error;
  }
  // Nothing may be left behind: no live request, no KV page, every request counted.
  v1::Stats after;
  if (!probe.stats(&after).ok()) return unavailable("GetStats failed on " + target);
  const int64_t served = after.requests_finished() - before.requests_finished();
  const int64_t leftover = after.kv_pages_used() + after.running() + after.queued();
  if (served != all.requests) {
    all.wrong += std::max<int64_t>(1, std::abs(all.requests - served));
    std::fprintf(stderr, "serve_bench: %lld requests sent, the server finished %lld\n",
                 static_cast<long long>(all.requests), static_cast<long long>(served));
  }
  if (leftover != 0) {
    all.wrong += 1;
    std::fprintf(stderr,
                 "serve_bench: afterwards the server holds %lld KV pages, %lld running, "
                 "%lld queued\n",
                 static_cast<long long>(after.kv_pages_used()),
                 static_cast<long long>(after.running()), static_cast<long long>(after.queued()));
  }
  if (!all.first_error.empty()) {
    std::fprintf(stderr, "serve_bench: first failure: %s\n", all.first_error.c_str());
  }
  const int64_t mixed = after.mixed_steps() - before.mixed_steps();
  const int64_t steps = after.steps() - before.steps();
  table->add_row(
      {clients, all.requests,
       double(all.prompt_tokens) / double(std::max<int64_t>(1, all.requests)), all.tokens, wall,
       double(all.requests) / wall, double(all.tokens) / wall, quantile_ms(all.ttft, 0.5),
       quantile_ms(all.ttft, 0.99), quantile_ms(all.itl, 0.5), quantile_ms(all.itl, 0.99),
       quantile_ms(all.e2e, 0.5) / 1e3, quantile_ms(all.e2e, 0.99) / 1e3,
       steps > 0 ? 100.0 * double(mixed) / double(steps) : 0.0, after.kv_pages_used(), all.wrong});
  return ok_status();
}

int run(const Options& o) {
  std::vector<MixEntry> mix;
  std::vector<int64_t> client_counts;
  Status st = parse_mix(o.prompt_mix, &mix);
  std::stringstream cs(o.clients);
  for (std::string item; st.ok() && std::getline(cs, item, ',');) {
    try {
      client_counts.push_back(std::stoll(item));
    } catch (const std::exception&) {
      st = invalid_argument("--clients: '" + item + "' is not a count");
    }
  }
  if (st.ok() && o.server.empty() == o.model_dir.empty()) {
    st = invalid_argument("give one of --server HOST:PORT or --model DIR");
  }
  if (!st.ok()) {
    std::fprintf(stderr, "serve_bench: error: %s\n", st.message().c_str());
    return 1;
  }
  // The in-process server (--model): the engine, its tokenizer and the coordinator.
  std::unique_ptr<engine::Engine> engine;
  std::unique_ptr<model::Tokenizer> tok;
  std::unique_ptr<rpc::Server> server;
  std::string target = o.server;
  if (!o.model_dir.empty()) {
    std::FILE* probe_config = std::fopen((o.model_dir + "/config.json").c_str(), "rb");
    if (probe_config == nullptr) {
      std::printf("SKIP: no model at %s\n", o.model_dir.c_str());
      return 0;
    }
    std::fclose(probe_config);
    engine::EngineConfig config = o.engine;
    if (o.device != "cpu") {
      config.device = Device{DeviceKind::kCuda, 0};
      config.dtype = DType::kBF16;
    }
    if (o.threads > 0) set_cpu_threads(o.threads);
    st = engine::Engine::load(o.model_dir, config, &engine);
    if (st.ok()) {
      const Status ts = model::Tokenizer::load_from_dir(o.model_dir, &tok);
      rpc::ServerOptions so;
      so.listen = "127.0.0.1:0";
      so.auth_token = o.auth_token;
      st = ts.ok() || ts.code() == StatusCode::kNotFound
               ? rpc::Server::start(*engine, tok.get(), so, &server)
               : ts;
    }
    if (!st.ok()) {
      std::fprintf(stderr, "serve_bench: error: %s\n", st.message().c_str());
      return 1;
    }
    target = server->address();
  }
  rpc::ClientOptions co;
  co.auth_token = o.auth_token;
  rpc::Client probe(target, co);
  v1::ModelInfo info;
  if (!probe.wait_ready(30) || !probe.model_info(&info).ok()) {
    std::fprintf(stderr, "serve_bench: error: no tidal server answers on %s\n", target.c_str());
    return 1;
  }
  BenchInfo bi = collect_bench_info("serve_bench");
  bi.extra = {{"server", o.model_dir.empty() ? target : "in-process"},
              {"model", info.config().name()},
              {"server_device", info.device() + " " + info.dtype()},
              {"max_batch", std::to_string(info.limits().max_batch())},
              {"kv_tokens", std::to_string(info.kv().tokens())},
              {"prefill_chunk", std::to_string(info.limits().prefill_chunk())}};
  Table table(bi, {{"clients", 7, true, 0},
                   {"requests", 8, true, 0},
                   {"prompt_avg", 10, true, 1},
                   {"gen_tok", 8, true, 0},
                   {"wall_s", 7, true, 2},
                   {"req/s", 7, true, 2},
                   {"tok/s", 8, true, 1},
                   {"ttft_p50", 9, true, 1},
                   {"ttft_p99", 9, true, 1},
                   {"itl_p50", 8, true, 2},
                   {"itl_p99", 8, true, 2},
                   {"e2e_p50", 8, true, 3},
                   {"e2e_p99", 8, true, 3},
                   {"mixed%", 6, true, 1},
                   {"kv_end", 6, true, 0},
                   {"#wrong", 6, true, 0}});
  table.print_header({"prompt mix (tokens:weight) " + o.prompt_mix + ", " +
                          std::to_string(o.max_new_tokens) + " new tokens each, attention " +
                          o.attention +
                          (o.attention == "full" ? "" : " budget " + std::to_string(o.budget)) +
                          ", temperature " + std::to_string(o.temperature),
                      (o.duration > 0 ? "soak: clients loop for " + std::to_string(o.duration) +
                                            " s"
                                      : std::to_string(o.requests) + " requests per client") +
                          ", after " + std::to_string(o.warmup_requests) +
                          " untimed warm-up request(s) each",
                      "ttft / itl in ms, e2e in s, measured by the clients; mixed% = steps "
                      "holding decode tokens and prefill chunks; kv_end = KV pages held after"});
  for (int64_t n : client_counts) {
    st = run_load(o, target, mix, info.config().vocab(), n, &table);
    if (!st.ok()) {
      std::fprintf(stderr, "serve_bench: error: %s\n", st.message().c_str());
      return 1;
    }
  }
  st = table.write_files(o.json_path, o.csv_path);
  if (server) server->shutdown(5);
  if (!st.ok()) {
    std::fprintf(stderr, "serve_bench: error: %s\n", st.message().c_str());
    return 1;
  }
  if (table.failed_rows() > 0) {
    std::fprintf(stderr, "serve_bench: FAILED: %lld rows have #wrong > 0\n",
                 static_cast<long long>(table.failed_rows()));
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace tidal::bench

int main(int argc, char** argv) {
  using tidal::bench::Options;
  Options o;
  o.engine.max_batch = 32;
  CLI::App app{"serve_bench: concurrent clients against the tidal gRPC coordinator"};
  auto* server = app.add_option("--server", o.server, "host:port of a running `tidal serve`");
  auto* model = app.add_option("--model", o.model_dir, "serve this model in-process instead");
  server->excludes(model);
  app.add_option("--device", o.device, "in-process server: cpu or cuda")->capture_default_str();
  app.add_option("--threads", o.threads, "in-process server on the CPU: threads; 0: all cores");
  app.add_option("--max-batch", o.engine.max_batch, "in-process server: sequences per step")
      ->capture_default_str();
  app.add_option("--kv-capacity", o.engine.kv_capacity, "in-process server: KV tokens; 0: auto");
  app.add_option("--prefill-chunk", o.engine.prefill_chunk, "in-process server")
      ->capture_default_str();
  app.add_option("--auth-token", o.auth_token, "the server's shared secret");
  app.add_option("--clients", o.clients, "concurrent clients, one row each (e.g. 32,64)")
      ->capture_default_str();
  app.add_option("--requests", o.requests, "requests per client")->capture_default_str();
  app.add_option("--warmup-requests", o.warmup_requests,
                 "untimed requests per client before each row (graph captures, connections)")
      ->check(CLI::Range(int64_t(0), int64_t(1000)))
      ->capture_default_str();
  app.add_option("--duration", o.duration, "soak: seconds the clients keep sending");
  app.add_option("--prompt-mix", o.prompt_mix, "prompt lengths and weights")->capture_default_str();
  app.add_option("--max-new-tokens", o.max_new_tokens, "tokens per request")->capture_default_str();
  app.add_option("--attention", o.attention, "full, tidal, quest or mixed")->capture_default_str();
  app.add_option("--budget", o.budget, "tidal / quest budget")->capture_default_str();
  app.add_option("--correction-interval", o.correction_interval, "tidal / quest; 0: off");
  app.add_option("--temperature", o.temperature, "sampling temperature")->capture_default_str();
  app.add_option("--seed", o.seed, "prompts and sampling seeds")->capture_default_str();
  app.add_option("--json", o.json_path, "also write the table as JSON");
  app.add_option("--csv", o.csv_path, "also write the table as CSV");
  CLI11_PARSE(app, argc, argv);
  return tidal::bench::run(o);
}
