// SPDX-License-Identifier: Apache-2.0
// The tidal command end to end, as a user runs it: golden generation on stories260K,
// tokenize / info output, and one clear error line (exit code 1, no crash) for each bad input.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>

#include "runtime/device.h"
#include "tests/testing/testing.h"

namespace tidal {
namespace {

struct CliRun {
  int exit_code = -1;  // -1 when killed by a signal
  std::string out;
  std::string err;
};

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// `stdout_to`: where stdout goes instead of a file the run returns (e.g. /dev/full).
CliRun tidal(const std::string& args, const std::string& stdout_to = "") {
  const std::string dir = testing::temp_dir("cli");
  const std::string cmd = std::string(TIDAL_BINARY) + " " + args + " > " +
                          (stdout_to.empty() ? dir + "/out" : stdout_to) + " 2> " + dir + "/err";
  const int status = std::system(cmd.c_str());
  CliRun r;
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (stdout_to.empty()) r.out = testing::read_file(dir + "/out");
  r.err = testing::read_file(dir + "/err");
  return r;
}

// Runs tidal with stdout a pipe whose reader has already gone: every write fails (EPIPE).
CliRun tidal_to_closed_pipe(const std::string& args) {
  const std::string dir = testing::temp_dir("cli");
  const std::string cmd = std::string(TIDAL_BINARY) + " " + args + " 2> " + dir + "/err";
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  close(fds[0]);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[1]);
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  int status = 0;
  waitpid(pid, &status, 0);
  CliRun r;
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  r.err = testing::read_file(dir + "/err");
  return r;
}

// A failed run: exit code 1 and exactly one stderr line holding `what`.
void expect_error(const CliRun& r, const std::string& what) {
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("tidal: error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

const std::string kStories = testing::shared_path("models/stories260K/hf");

TEST(Cli, GenerateGreedyFromBosPrintsTheGoldenText) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  const CliRun r =
      tidal("generate --model " + kStories + " --prompt '' --max-new-tokens 256 --temperature 0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string golden =
      testing::read_file(testing::shared_path("models/stories260K/greedy_from_BOS_256.txt"));
  std::string want = golden.substr(0, golden.rfind("ids: ["));
  EXPECT_EQ(r.out, want);  // the text, then the newline the CLI ends with
  EXPECT_NE(r.err.find("generated 256 tokens"), std::string::npos) << r.err;
  // 256 rows: BOS and 255 generated tokens; the last one is never fed back.
  EXPECT_NE(r.err.find("KV cache: 256 of 512 tokens"), std::string::npos) << r.err;
}

TEST(Cli, PrintIdsAndPromptIds) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  const CliRun r = tidal("generate --model " + kStories +
                         " --prompt-ids 1 --max-new-tokens 5 --temperature 0 --print-ids");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "403 407 261 378 432\n");
}

TEST(Cli, SameSeedSameText) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  const std::string args = "generate --model " + kStories +
                           " --prompt 'Once upon a time' --max-new-tokens 30 --seed 5 "
                           "--temperature 1 --top-p 0.9";
  const CliRun a = tidal(args), b = tidal(args);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_GT(a.out.size(), 20u);
}

TEST(Cli, StopStringEndsTheText) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  const CliRun r = tidal("generate --model " + kStories +
                         " --prompt '' --temperature 0 --stop 'Lily.' --max-new-tokens 100");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "Once upon a time, there was a little girl named \n");
  EXPECT_NE(r.err.find("finish: stop_string"), std::string::npos) << r.err;
}

TEST(Cli, SparseAttentionFlagsAndStats) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  const CliRun r = tidal("generate --model " + kStories +
                         " --prompt '' --temperature 0 --max-new-tokens 64 --attention tidal "
                         "--budget 16 --granularity per-kv-head --reselect-layers 3 "
                         "--correction-interval 16 --stats");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("attention tidal (budget 16, per-kv-head, sparse_start 2, reselect 3): "
                       "63 decode steps"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("overlap of consecutive selection layers' lists"), std::string::npos);
  EXPECT_NE(r.err.find("cache correction: 3 passes, 48 tokens recomputed"), std::string::npos)
      << r.err;
  const CliRun q = tidal("generate --model " + kStories +
                         " --prompt '' --temperature 0 --max-new-tokens 8 --attention quest "
                         "--budget 32 --stats");
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_NE(q.err.find("attention quest (budget 32, page 16, dense_layers 2)"), std::string::npos);
  expect_error(tidal("generate --model " + kStories + " --attention tidal --budget 1"),
               "tidal --budget must be >= 2");
  expect_error(tidal("generate --model " + kStories + " --attention tidal --reselect-layers 9"),
               "--reselect-layers: layer 9 is outside the 5 layers");
  expect_error(tidal("generate --model " + kStories + " --attention tidal --granularity rows"),
               "unknown granularity 'rows'");
  expect_error(tidal("generate --model " + kStories + " --attention quest --budget 8"),
               "below one page");
  expect_error(tidal("generate --model " + kStories + " --attention dense"),
               "unknown attention 'dense'");
}

// A budget above the context attends every position: tidal's default 256 under --max-context
// 100 (it was refused, naming an engine field no flag sets) and a quest budget of 1000 give
// full attention's greedy tokens.
TEST(Cli, BudgetBeyondTheContextIsFullAttention) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  const std::string base = "generate --model " + kStories +
                           " --prompt 'Once upon a time' --temperature 0 --print-ids "
                           "--max-new-tokens 60 --max-context 100";
  const CliRun full = tidal(base);
  ASSERT_EQ(full.exit_code, 0) << full.err;
  for (const char* policy : {" --attention tidal", " --attention quest --budget 1000"}) {
    const CliRun r = tidal(base + policy);
    ASSERT_EQ(r.exit_code, 0) << policy << ": " << r.err;
    EXPECT_EQ(r.out, full.out) << policy;
  }
}

// generate runs one request: its engine's lists are sized for its --budget. The embedded model's
// context is 16384 tokens; a budget past the engine's default max_budget of 4096 was refused
// ('budget 5000 exceeds the engine's max_budget 4096'), and no flag could raise it.
TEST(Cli, GenerateTakesABudgetAboveTheDefaultMaxBudget) {
  const std::string base = "generate --model " + std::string(TIDAL_SOURCE_DIR) +
                           "/model/tidal-tiny-16k --prompt-ids 4094,300,301 --temperature 0 "
                           "--print-ids --max-new-tokens 6";
  const CliRun full = tidal(base);
  ASSERT_EQ(full.exit_code, 0) << full.err;
  for (const std::string args : {"tidal --budget 5000", "quest --budget 100000"}) {
    const CliRun r = tidal(base + " --stats --attention " + args);
    ASSERT_EQ(r.exit_code, 0) << args << ": " << r.err;
    EXPECT_EQ(r.out, full.out) << args;  // n <= K: full attention
    EXPECT_NE(r.err.find("(budget " + args.substr(args.rfind(' ') + 1)), std::string::npos)
        << r.err;
  }
}

// A model directory holding tidal_policy.json (written by tidal calibrate): its layers are the
// default of --attention tidal; layer flags override it; a file that does not fit is named.
TEST(Cli, GenerateTakesTheModelsCalibratedLayers) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  const std::string dir = testing::temp_dir("policy_model");
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"}) {
    testing::write_file(dir + "/" + f, testing::read_file(kStories + "/" + f));
  }
  testing::write_file(dir + "/tidal_policy.json",
                      R"({"sparse_start": 3, "reselect_layers": [],
                          "calibration": {"summary": "test calibration"}})");
  const std::string run = "generate --model " + dir +
                          " --prompt '' --temperature 0 --max-new-tokens 4 --attention tidal "
                          "--budget 16 --stats";
  CliRun r = tidal(run);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("sparse_start 3, reselect none"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("selection layers from " + dir + "/tidal_policy.json: test calibration"),
            std::string::npos)
      << r.err;
  r = tidal(run + " --sparse-start 2");  // a layer flag: the depth rule for the rest
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("sparse_start 2, reselect none"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("selection layers from"), std::string::npos) << r.err;
  testing::write_file(dir + "/tidal_policy.json", R"({"sparse_start": 7, "reselect_layers": []})");
  expect_error(tidal(run), dir + "/tidal_policy.json does not fit this model");
  r = tidal("generate --model " + dir + " --prompt '' --max-new-tokens 2");  // full: unaffected
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// The embedded model ships a tidal_policy.json: a bad value of the user's own flag is named as
// the flag, not blamed on the file (which sets only the layers).
TEST(Cli, PolicyFlagErrorsNameTheFlagNotThePolicyFile) {
  const std::string gen = "generate --model " + std::string(TIDAL_SOURCE_DIR) +
                          "/model/tidal-tiny-16k --prompt '' --max-new-tokens 2 --attention tidal";
  for (const auto& [flags, error] :
       {std::pair<std::string, std::string>{" --budget 1", "tidal --budget must be >= 2"},
        {" --correction-interval -3", "--correction-interval must be >= 0 (0: off), got -3"}}) {
    const CliRun r = tidal(gen + flags);
    expect_error(r, error);
    EXPECT_EQ(r.err.find("tidal_policy.json"), std::string::npos) << r.err;
  }
}

TEST(Cli, TokenizeAndDecode) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  CliRun r =
      tidal("tokenize --model " + kStories + " --text " + quote("Hello world! Lily's dog ran."));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "1 346 306 414 263 304 341 443 317 439 419 400 428 352 303 426\n");
  r = tidal("tokenize --model " + kStories + " --no-bos --text 'The quick brown fox'");
  EXPECT_EQ(r.out, "291 410 456 425 417 340 268 420 327 416 272 414 444\n");
  r = tidal("tokenize --model " + kStories +
            " --decode --text '346 306 414 263 304 341 443 317 439 419 400 428 352 303 426'");
  EXPECT_EQ(r.out, "Hello world! Lily's dog ran.\n");
  // Decoding adds no BOS: --no-bos there would do nothing.
  expect_error(tidal("tokenize --model " + kStories + " --decode --no-bos --text '346 306'"),
               "--no-bos has no effect with --decode");
}

TEST(Cli, InfoPrintsConfigAndMemoryPlan) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  CliRun r = tidal("info --model " + kStories);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("parameters       260032"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("8 query, 4 kv (group 2)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("kv cache"), std::string::npos) << r.out;
  r = tidal("info --preset llama2-7b");
  EXPECT_NE(r.out.find("6738415616"), std::string::npos) << r.out;
}

// `--no-quest-bounds`: a KV cache without Quest's page bounds (smaller), which then refuses quest;
// `info --memory-gib`: a plan against a device this machine does not have.
TEST(Cli, InfoPlansWithoutQuestBoundsAndForAnotherDevicesMemory) {
  const std::string tiny = "info --preset tiny --device cpu --kv-capacity 4096";
  CliRun with = tidal(tiny), without = tidal(tiny + " --no-quest-bounds");
  ASSERT_EQ(with.exit_code, 0) << with.err;
  ASSERT_EQ(without.exit_code, 0) << without.err;
  // tiny: 4 layers x 2 KV heads x 2 bound rows x 32 dims x 4 bytes (f32) = 2048 bytes a page.
  EXPECT_NE(with.out.find("257 pages x 34816 bytes"), std::string::npos) << with.out;
  EXPECT_NE(without.out.find("257 pages x 32768 bytes"), std::string::npos) << without.out;
  EXPECT_NE(without.out.find("+ 0 bytes of Quest key bounds"), std::string::npos) << without.out;
  // llama3-8b at 4M tokens of FP8 KV (67584 bytes a token): 264 GiB, beyond one 141 GiB H200,
  // 33 GiB a rank (+ weights, workspace) over 8 of them.
  const std::string plan =
      "info --preset llama3-8b --device cpu --dtype bf16 --kv-dtype fp8 --max-context 4194304 "
      "--kv-capacity 4194304 --no-quest-bounds --memory-gib ";
  const std::string big = plan + "141";
  CliRun one = tidal(big);
  expect_error(one, "does not fit");
  EXPECT_NE(one.out.find("151397597184 bytes (141.00 GiB) available"), std::string::npos)
      << one.out;
  CliRun eight = tidal(big + " --tp 8");
  ASSERT_EQ(eight.exit_code, 0) << eight.err;
  EXPECT_NE(eight.out.find("141.00 GiB available"), std::string::npos) << eight.out;
  EXPECT_NE(eight.out.find("  fits           yes"), std::string::npos) << eight.out;
  expect_error(tidal(plan + "30 --tp 8"), "does not fit");
  expect_error(tidal("info --preset tiny --device cpu --memory-gib -1"), "--memory-gib");
}

// `info --max-budget`: the plan of a server started with `serve --max-budget` (its selection
// lists are sized for the budget); info had no such flag and planned every server at 4096.
TEST(Cli, InfoPlansTheMaxBudgetOfAServer) {
  const std::string tiny = "info --preset tiny --device cpu --kv-capacity 4096 --max-budget ";
  const auto workspace = [](const CliRun& r) {
    const size_t at = r.out.find("  workspace      ");
    return at == std::string::npos ? int64_t(-1) : std::stoll(r.out.substr(at + 17));
  };
  const CliRun small = tidal(tiny + "64"), large = tidal(tiny + "4096");
  ASSERT_EQ(small.exit_code, 0) << small.err;
  ASSERT_EQ(large.exit_code, 0) << large.err;
  EXPECT_GT(workspace(small), 0) << small.out;
  EXPECT_GT(workspace(large), workspace(small)) << small.out << large.out;
  expect_error(tidal(tiny + "1"), "--max-budget must be in [2, 268435456]");
}

TEST(Cli, QuestIsRefusedWithoutQuestBounds) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  expect_error(tidal("generate --model " + kStories +
                     " --device cpu --attention quest --budget 32 --no-quest-bounds --prompt hi"),
               "--no-quest-bounds");
}

// --tp and --pp under 1 name no layout: generate and bench refuse them (they used to run one
// process, or a job of --tp 1 for `--tp -2 --pp 1`, and under mpirun every rank alone).
TEST(Cli, TpOrPpBelowOneIsRefused) {
  const std::string generate =
      "generate --preset tiny --device cpu --prompt-ids 1,5 --print-ids --max-new-tokens 2 ";
  const std::string bench =
      "bench --preset tiny --device cpu --context 100 --batch 1 --budget 32 --steps 1 --warmup 0 ";
  for (const std::string& command : {generate, bench}) {
    expect_error(tidal(command + "--tp 0"), "--tp: Value 0 not in range 1");
    expect_error(tidal(command + "--tp -2 --pp 1"), "--tp: Value -2 not in range 1");
    expect_error(tidal(command + "--pp 0"), "--pp: Value 0 not in range 1");
    expect_error(tidal(command + "--tp 1 --pp -1"), "--pp: Value -1 not in range 1");
  }
}

// `info --tp --pp`: every rank's plan without a job; a layout the model cannot take, and one no
// machine can hold, are errors naming why.
TEST(Cli, InfoPlansEveryRankOfALayout) {
  CliRun r = tidal("info --preset tiny --device cpu --tp 2 --pp 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("tp 2 x pp 2 = 4 ranks"), std::string::npos) << r.out;
  for (const char* rank : {"rank 0 ", "rank 1 ", "rank 2 ", "rank 3 "}) {
    EXPECT_NE(r.out.find(rank), std::string::npos) << rank << "\n" << r.out;
  }
  EXPECT_NE(r.out.find("stage 1, layers [2, 4), query heads [4, 8), KV heads [1, 2)"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("does not fit"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  fits           yes"), std::string::npos) << r.out;
  // tp 4 over 2 KV heads: each KV head on 2 ranks.
  r = tidal("info --preset tiny --device cpu --tp 4");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("KV heads [1, 2) on 2 ranks"), std::string::npos) << r.out;
  expect_error(tidal("info --preset llama3-8b --device cpu --tp 3"),
               "cannot split 32 query heads and 8 KV heads over tp 3");
  expect_error(tidal("info --preset tiny --device cpu --tp -2"), "--tp and --pp must be");
  // 200M tokens of llama3-8b KV on 8 ranks: 3 TB a rank, beyond any machine (unless this one
  // cannot say how much memory it has: then nothing is refused).
  r = tidal(
      "info --preset llama3-8b --device cpu --tp 8 --max-context 200000000 "
      "--kv-capacity 200000000");
  if (r.out.find("unknown available") == std::string::npos) {
    expect_error(r, "rank 0: ");
    EXPECT_NE(r.out.find("  fits           no"), std::string::npos) << r.out;
  }
  // 100M tokens of context: the automatic KV capacity shrinks below one sequence. The advice
  // names fp8 only where the KV cache is not fp8 already (where memory is known and the weights
  // fit, as on any machine that runs the suite).
  for (const std::string kv : {"auto", "fp8"}) {
    r = tidal("info --preset llama3-8b --device cpu --tp 8 --max-context 100000000 --kv-dtype " +
              kv);
    if (r.err.find("the layout's KV capacity") == std::string::npos) continue;
    expect_error(r, "more ranks");
    EXPECT_EQ(r.err.find("--kv-dtype fp8") != std::string::npos, kv == "auto") << r.err;
  }
}

// `tidal bench <args> --json FILE` on the CPU (a fresh FILE each call), and the table it wrote
// (null when it wrote none).
struct BenchRun {
  CliRun run;
  nlohmann::json table;
};
BenchRun bench_rows(const std::string& args) {
  const std::string json = testing::temp_dir("cli") + "/rows.json";
  BenchRun b{tidal("bench --device cpu --preset tiny --steps 1 --warmup 0 --no-breakdown " + args +
                   " --json " + json),
             nullptr};
  std::ifstream in(json);
  if (in.good()) b.table = nlohmann::json::parse(in);
  return b;
}

// A batch size whose engine does not fit no longer costs the rows that do: batch 1 runs and is in
// the table, batch 65535 (over 500 GB of KV cache for tiny at 4000 tokens) is named as skipped,
// and the exit says so.
TEST(Cli, BenchRunsTheBatchesThatFit) {
  const BenchRun b = bench_rows("--policy full --context 4000 --batch 65535,1");
  const CliRun& r = b.run;
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("tidal bench: tiny at batch 65535 does not fit: its rows are skipped"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("tidal: error: skipped what does not fit (the other rows ran): tiny at "
                       "batch 65535: "),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("at batch 1:"), std::string::npos) << r.err;
  ASSERT_FALSE(b.table.is_null()) << r.err;
  ASSERT_EQ(b.table.at("rows").size(), 1u) << b.table.dump();
  EXPECT_EQ(b.table.at("rows")[0].at("batch").get<int64_t>(), 1);
  EXPECT_EQ(b.table.at("rows")[0].at("context").get<int64_t>(), 4000);
  EXPECT_GT(b.table.at("rows")[0].at("ms").get<double>(), 0.0);
}

// Quest rows run on an engine of their own (with Quest's page bounds), `full` rows on one without
// them: two engines, each announced on stderr, and the Quest rows after the others; --mixed
// serves every variant in one batch, on one engine.
TEST(Cli, BenchRunsQuestRowsOnTheirOwnEngine) {
  const std::string engine = "tidal bench: tiny on ";
  const BenchRun b = bench_rows("--policy quest,full --budget 64 --context 600");
  ASSERT_EQ(b.run.exit_code, 0) << b.run.err;
  size_t engines = 0;
  for (size_t at = b.run.err.find(engine); at != std::string::npos;
       at = b.run.err.find(engine, at + 1)) {
    ++engines;
  }
  EXPECT_EQ(engines, 2u) << b.run.err;
  ASSERT_FALSE(b.table.is_null()) << b.run.err;
  ASSERT_EQ(b.table.at("rows").size(), 2u) << b.table.dump();
  EXPECT_EQ(b.table.at("rows")[0].at("policy").get<std::string>(), "full");
  EXPECT_EQ(b.table.at("rows")[1].at("policy").get<std::string>(), "quest");
  const BenchRun m = bench_rows("--policy quest,full --budget 64 --context 600 --mixed");
  ASSERT_EQ(m.run.exit_code, 0) << m.run.err;
  EXPECT_NE(m.run.err.find(engine), std::string::npos) << m.run.err;
  EXPECT_EQ(m.run.err.find(engine), m.run.err.rfind(engine)) << m.run.err;
}

// A CPU run says it is one: no copy bandwidth is measured there, so no copy figure (null, printed
// "-", not 0.00 TB/s) and no floor; the latency note names the host clock, not CUDA events.
TEST(Cli, BenchOnTheCpuPrintsNoGpuFigures) {
  const BenchRun b = bench_rows("--policy full --context 200");
  ASSERT_EQ(b.run.exit_code, 0) << b.run.err;
  ASSERT_FALSE(b.table.is_null()) << b.run.err;
  ASSERT_EQ(b.table.at("rows").size(), 1u) << b.table.dump();
  const nlohmann::json& row = b.table.at("rows")[0];
  EXPECT_EQ(row.at("device").get<std::string>(), "cpu");
  EXPECT_TRUE(row.at("copy_tbps").is_null()) << row.dump();
  EXPECT_TRUE(row.at("floor_ms").is_null()) << row.dump();
  EXPECT_TRUE(row.at("%floor").is_null()) << row.dump();
  EXPECT_EQ(b.run.out.find("CUDA events"), std::string::npos) << b.run.out;
  EXPECT_NE(b.run.out.find("host clock"), std::string::npos) << b.run.out;
}

// `bench --agreement` names are all checked, even where no row would use them.
TEST(Cli, BenchRefusesAnUnknownAgreement) {
  expect_error(tidal("bench --device cpu --preset tiny --policy full --agreement approx,bogus"),
               "--agreement: unknown agreement 'bogus'");
}

// An unknown preset after a known one (--preset tiny,nosuch) was found only when its turn came,
// after tiny's rows had run and printed; every name is now checked before the first row.
TEST(Cli, BenchRefusesAnUnknownPresetBeforeAnyRow) {
  const CliRun r = tidal(
      "bench --device cpu --preset tiny,nosuch --context 100 --policy full --steps 1 --warmup 0");
  expect_error(r, "unknown model preset 'nosuch'");
  EXPECT_EQ(r.out, "");
}

// A value listed twice in one of bench's lists ran and printed its rows twice (--context 100,100
// two identical rows of one engine; --preset tiny,tiny a second engine with the same rows). Each
// is refused before any engine, naming the flag and the value, compared as parsed (1K and 1000
// are one context, per_kv_head and per-kv-head one granularity).
TEST(Cli, BenchListsWithAValueTwiceAreRefused) {
  const std::string bench = "bench --device cpu --steps 1 --warmup 0 --no-breakdown ";
  const std::string tiny = bench + "--preset tiny --context 100 ";
  const struct {
    std::string args;
    const char* error;
  } cases[] = {
      {bench + "--preset tiny,tiny --context 100 --policy full", "--preset: tiny is listed twice"},
      {bench + "--preset tiny --context 100,100 --policy full", "--context: 100 is listed twice"},
      {bench + "--preset tiny --context 1K,1000 --policy full",
       "--context: 1000 is listed twice ('1K' and '1000')"},
      {tiny + "--batch 1,1 --policy full", "--batch: 1 is listed twice"},
      {tiny + "--policy quest --budget 64,64", "--budget: 64 is listed twice"},
      {tiny + "--policy tidal,full,tidal --budget 64", "--policy: tidal is listed twice"},
      {tiny + "--policy tidal --budget 64 --granularity per-kv-head,shared,per_kv_head",
       "--granularity: per-kv-head is listed twice ('per-kv-head' and 'per_kv_head')"},
  };
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.args);
    const CliRun r = tidal(tc.args);
    expect_error(r, tc.error);
    EXPECT_EQ(r.out, "");
  }
}

// --graph-replays is bounded: a huge count (back-to-back graph launches) kept a GPU busy for
// hours. Refused before anything runs, on the CPU too, where no graph runs.
TEST(Cli, BenchGraphReplaysAreBounded) {
  const std::string bench = "bench --device cpu --preset tiny --policy full --context 100 ";
  const CliRun r = tidal(bench + "--graph-replays 100000000");
  expect_error(r, "--graph-replays must be in [0, 10000], got 100000000");
  EXPECT_EQ(r.err.find("tidal bench: tiny on "), std::string::npos) << r.err;
}

// The engine settings bench's flags give are checked before the table starts and named by
// flag, as generate names them (they failed at the first engine, as "tiny: page_size 0 ...").
TEST(Cli, BenchEngineFlagErrorsNameTheFlag) {
  const std::string bench = "bench --device cpu --preset tiny --policy full --context 100 ";
  const CliRun page = tidal(bench + "--page-size 0");
  expect_error(page, "tidal: error: --page-size 0 is out of range [1, 65536]");
  EXPECT_EQ(page.out.find("# tidal bench"), std::string::npos) << page.out;
  expect_error(tidal(bench + "--policy quest --budget 64 --page-size 0"),
               "tidal: error: --page-size 0 is out of range");
  expect_error(tidal(bench + "--prefill-chunk 0"),
               "tidal: error: --prefill-chunk 0 is out of range [1, 1048576]");
}

// A --json or --csv file that cannot be written is refused before the first row is timed (it
// was written only after the whole run: hours of a GPU sweep, then an error).
TEST(Cli, BenchRefusesAnUnwritableOutputFileFirst) {
  const std::string bench =
      "bench --device cpu --preset tiny --policy full --context 100 "
      "--steps 1 --warmup 0 --no-breakdown ";
  for (const char* flag : {"--json", "--csv"}) {
    const CliRun r = tidal(bench + flag + " /nonexistent/table.out");
    expect_error(r, "/nonexistent/table.out");
    EXPECT_EQ(r.out.find("  cpu          tiny"), std::string::npos) << flag << ": " << r.out;
    EXPECT_EQ(r.err.find("tidal bench: tiny on "), std::string::npos) << flag << ": " << r.err;
  }
}

// An empty --prompt-file path is an error, not the flag's absence (it generated from BOS alone,
// and beside --prompt passed the one-prompt check). The embedded model; nothing loads.
TEST(Cli, EmptyPromptFileIsRefused) {
  expect_error(tidal("generate --prompt-file '' --max-new-tokens 3"),
               "--prompt-file needs a path (got an empty one)");
  expect_error(tidal("generate --prompt hi --prompt-file '' --max-new-tokens 3"),
               "give one of --prompt, --prompt-file, --prompt-ids");
}

// An empty --prompt-ids list is an error too, not the flag's absence (it generated from BOS
// alone, and beside --prompt passed the one-prompt check). The embedded model; nothing loads.
TEST(Cli, EmptyPromptIdsIsRefused) {
  expect_error(tidal("generate --prompt-ids '' --max-new-tokens 3"),
               "--prompt-ids needs token ids (got an empty list)");
  expect_error(tidal("generate --prompt hi --prompt-ids '' --max-new-tokens 3"),
               "give one of --prompt, --prompt-file, --prompt-ids");
}

// `bench --kernel-trace` traces graph replays on a GPU: on the CPU it is a clear error, before any
// row runs and with no file written.
TEST(Cli, BenchKernelTraceNeedsAGpu) {
  const std::string path = ::testing::TempDir() + "cli_kernel_trace.json";
  std::remove(path.c_str());
  expect_error(tidal("bench --device cpu --preset tiny --policy full --context 100 --kernel-trace " +
                     path),
               "--kernel-trace traces the graph replays of graph_ms: it needs a GPU");
  EXPECT_FALSE(std::ifstream(path).good());
}

// `generate --preset`: seeded random weights, ids in and out; the seed picks the model, and a
// preset has no tokenizer to take a text prompt.
TEST(Cli, GeneratePresetIsSeededIdsOnly) {
  const std::string args =
      "generate --preset tiny --device cpu --prompt-ids 1,5,9,200 --max-new-tokens 12 "
      "--temperature 0 --print-ids --weights-seed ";
  const CliRun a = tidal(args + "3"), again = tidal(args + "3"), other = tidal(args + "4");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(other.exit_code, 0) << other.err;
  EXPECT_TRUE(std::regex_search(a.out, std::regex("^[0-9]+( [0-9]+){11}\n")))
      << "12 ids on one line: " << a.out;
  EXPECT_EQ(again.out, a.out);
  EXPECT_NE(other.out, a.out) << "another seed is another model";
  expect_error(tidal("generate --preset tiny --device cpu --prompt hi"),
               "--preset tiny has no tokenizer: use --prompt-ids and --print-ids");
  expect_error(tidal("generate --preset tiny --device cpu --prompt-ids 1,2"),
               "--preset tiny has no tokenizer: use --prompt-ids and --print-ids");
  expect_error(tidal("generate --preset llama9 --prompt-ids 1 --print-ids"), "llama9");
  // A model directory's weights are its own: the seed would do nothing.
  expect_error(tidal("generate --weights-seed 3 --prompt-ids 1 --print-ids"),
               "--weights-seed has no effect without --preset");
}

TEST(Cli, BadInputGetsOneClearLine) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  expect_error(tidal("generate --model /nonexistent/model"), "/nonexistent/model");
  expect_error(tidal("generate --model " + kStories + " --top-p 0"), "--top-p must be in (0, 1]");
  expect_error(tidal("generate --model " + kStories + " --temperature -1"),
               "--temperature must be a finite number >= 0");
  std::string ids;
  for (int i = 0; i < 600; ++i) ids += (i ? "," : "") + std::string("5");
  expect_error(tidal("generate --model " + kStories + " --prompt-ids " + ids),
               "prompt of 600 tokens exceeds the context of 512 tokens");
  expect_error(tidal("generate --model " + kStories + " --kv-capacity 32 --prompt-ids " +
                     ids.substr(0, 2 * 40 - 1)),
               "exceeds the KV cache capacity of 32 tokens");
  expect_error(tidal("generate --model " + kStories + " --prompt-ids 1,x"),
               "'x' is not a token id");
  expect_error(tidal("tokenize --tokenizer /nonexistent/tokenizer.json --text hi"),
               "/nonexistent/tokenizer.json");
  expect_error(tidal("info --preset llama9"), "llama9");
}

TEST(Cli, DeviceAndDtypeFlags) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  expect_error(tidal("generate --model " + kStories + " --device tpu"),
               "--device must be auto, cpu, cuda or cuda:N");
  expect_error(tidal("generate --model " + kStories + " --dtype f8"),
               "--dtype must be auto, f32, f16 or bf16");
  expect_error(tidal("info --model " + kStories + " --device cuda:x"), "is not cuda:N");
  if (!cuda_available()) {
    expect_error(tidal("generate --model " + kStories + " --device cuda"),
                 "0 CUDA devices are visible");
  }
  // The CPU reference path in bf16 gives the same leading greedy tokens as in f32.
  const CliRun f32 = tidal("generate --model " + kStories +
                           " --device cpu --prompt '' --max-new-tokens 8 --temperature 0 "
                           "--print-ids");
  const CliRun bf16 = tidal("generate --model " + kStories +
                            " --device cpu --dtype bf16 --prompt '' --max-new-tokens 8 "
                            "--temperature 0 --print-ids");
  ASSERT_EQ(f32.exit_code, 0) << f32.err;
  ASSERT_EQ(bf16.exit_code, 0) << bf16.err;
  EXPECT_EQ(f32.out.substr(0, f32.out.find(' ')), bf16.out.substr(0, bf16.out.find(' ')));
  EXPECT_NE(bf16.err.find("device cpu, bf16"), std::string::npos) << bf16.err;
  const CliRun info = tidal("info --model " + kStories + " --device cpu --dtype f16");
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("memory plan      cpu, f16"), std::string::npos) << info.out;
}

// --kv-dtype: fp8 on the CPU path (the plan says so, generation runs), and a 16-bit KV dtype
// other than the activations' is refused.
TEST(Cli, KvDtypeFlag) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  expect_error(tidal("generate --model " + kStories + " --device cpu --kv-dtype bf16"),
               "the KV cache holds the activations' dtype (f32) or fp8");
  expect_error(tidal("generate --model " + kStories + " --kv-dtype e5m2"),
               "--kv-dtype must be auto, f32, f16, bf16 or fp8");
  const CliRun info = tidal("info --model " + kStories + " --device cpu --kv-dtype fp8");
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("KV cache fp8"), std::string::npos) << info.out;
  const CliRun gen = tidal("generate --model " + kStories +
                           " --device cpu --kv-dtype fp8 --prompt '' --max-new-tokens 8 "
                           "--temperature 0 --print-ids");
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  EXPECT_FALSE(gen.out.empty());
}

TEST(Cli, BrokenModelDirectoriesAreNamed) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  const std::string dir = testing::temp_dir("badmodel");
  const std::string config = testing::read_file(kStories + "/config.json");
  std::string yarn = config;
  yarn.insert(yarn.rfind('}'), ", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}");
  testing::write_file(dir + "/config.json", yarn);
  expect_error(tidal("generate --prompt-ids 1 --print-ids --model " + dir), "yarn");

  testing::write_file(dir + "/config.json", config);  // no safetensors yet
  expect_error(tidal("generate --prompt-ids 1 --print-ids --model " + dir), "model.safetensors");
  const std::string weights = testing::read_file(kStories + "/model.safetensors");
  testing::write_file(dir + "/model.safetensors", weights.substr(0, weights.size() / 2));
  const CliRun truncated = tidal("generate --prompt-ids 1 --print-ids --model " + dir);
  EXPECT_EQ(truncated.exit_code, 1) << truncated.err;
  EXPECT_NE(truncated.err.find("model.safetensors"), std::string::npos) << truncated.err;
}

TEST(Cli, ParseErrorsFollowTheErrorConvention) {
  for (const char* args : {"", "foo", "generate --max-new-tokens", "generate --max-new-tokens abc",
                           "generate --no-such-flag", "info --model", "tokenize --text"}) {
    const CliRun r = tidal(args);
    EXPECT_EQ(r.exit_code, 1) << args << ": " << r.err;
    EXPECT_EQ(r.err.rfind("tidal: error: ", 0), 0u) << args << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << args << ": " << r.err;
  }
  expect_error(tidal("foo"), "unknown subcommand 'foo'");
  expect_error(tidal("generate --max-new-tokens abc"), "--max-new-tokens");
  const CliRun help = tidal("generate --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--max-batch INT=1 "), std::string::npos) << help.out;
  const CliRun version = tidal("--version");
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_TRUE(std::regex_match(version.out, std::regex("tidal [0-9]+\\.[0-9]+\\.[0-9]+ \\(commit "
                                                       "([0-9a-f]{12}(-dirty)?|unknown)\\)\n")))
      << version.out;
}

// Reads "<label> <n> bytes" or "... = <a> x <b>" style figures from `tidal info`.
int64_t number_after(const std::string& text, const std::string& label) {
  const size_t at = text.find(label);
  EXPECT_NE(at, std::string::npos) << label << " in " << text;
  if (at == std::string::npos) return -1;
  return std::stoll(text.substr(at + label.size()));
}

// Every byte figure `tidal info` prints agrees with the arithmetic it states.
void expect_info_arithmetic(const std::string& out) {
  const int64_t weights = number_after(out, "  weights        ");
  const int64_t kv = number_after(out, "  kv cache       ");
  const int64_t workspace = number_after(out, "  workspace      ");
  const int64_t total = number_after(out, "  total          ");
  EXPECT_EQ(total, weights + kv + workspace) << out;
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(out, m,
                        std::regex("= ([0-9]+) pages x ([0-9]+) bytes \\+ ([0-9]+) bytes of "
                                   "alignment")))
      << out;
  const int64_t arena_pages = std::stoll(m[1]), page_bytes = std::stoll(m[2]);
  EXPECT_EQ(kv, arena_pages * page_bytes + std::stoll(m[3])) << out;
  ASSERT_TRUE(std::regex_search(
      out, m,
      std::regex("([0-9]+) tokens = ([0-9]+) pages x ([0-9]+) tokens, \\+ 1 padding page; a page = "
                 "([0-9]+) tokens x ([0-9]+) bytes of K and V \\([0-9]+ layers\\) \\+ ([0-9]+) "
                 "bytes of Quest key bounds")))
      << out;
  EXPECT_EQ(std::stoll(m[1]), std::stoll(m[2]) * std::stoll(m[3])) << out;
  EXPECT_EQ(arena_pages, std::stoll(m[2]) + 1) << out;
  EXPECT_EQ(page_bytes, std::stoll(m[4]) * std::stoll(m[5]) + std::stoll(m[6])) << out;
}

TEST(Cli, InfoFiguresAgreeAndNotFittingIsSaid) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  for (const char* flags :
       {"", " --max-batch 1", " --dtype f16 --page-size 7 --max-batch 3", " --kv-capacity 1000"}) {
    const CliRun r = tidal("info --model " + kStories + flags);
    ASSERT_EQ(r.exit_code, 0) << flags << ": " << r.err;
    expect_info_arithmetic(r.out);
    EXPECT_NE(r.out.find("  fits           yes"), std::string::npos) << r.out;
  }
  expect_info_arithmetic(
      tidal("info --model " + std::string(TIDAL_SOURCE_DIR) + "/model/tidal-tiny-16k").out);
  // A plan no machine holds: the figures, "no", and one error line with the bytes it needs, the
  // bytes there are, the device, and the flag that sized it.
  const CliRun big =
      tidal("info --model " + kStories + " --page-size 65536 --kv-capacity 1099511627776");
  EXPECT_NE(big.out.find("  fits           no"), std::string::npos) << big.out;
  expect_info_arithmetic(big.out);
  expect_error(big, "does not fit in cpu memory (f32): it needs ");
  EXPECT_TRUE(
      std::regex_search(big.err, std::regex("it needs [0-9]+ bytes \\([0-9.]+ [KMGTPE]iB\\) "
                                            "\\(.*\\) and [0-9]+ bytes \\([0-9.]+ "
                                            "[KMGTPE]iB\\) are available")))
      << big.err;
  EXPECT_NE(big.err.find("--kv-capacity 1099511627776 tokens"), std::string::npos) << big.err;
  // Flags that make any plan impossible are named.
  expect_error(tidal("info --model " + kStories + " --page-size 100000000"),
               "--page-size 100000000 is out of range");
  expect_error(tidal("info --model " + kStories + " --max-batch 1000000000"),
               "--max-batch 1000000000 is out of range");
  expect_error(tidal("generate --model " + kStories + " --max-batch 1000000000"),
               "--max-batch 1000000000 is out of range");
}

TEST(Cli, HugeConfigSizesAreRefusedAtOnce) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  const std::string dir = testing::temp_dir("huge");
  std::string config = testing::read_file(kStories + "/config.json");
  const size_t at = config.find("\"num_hidden_layers\": 5");
  ASSERT_NE(at, std::string::npos) << config;
  config.replace(at, std::strlen("\"num_hidden_layers\": 5"), "\"num_hidden_layers\": 100000000");
  testing::write_file(dir + "/config.json", config);
  for (const std::string& cmd : {"info --model " + dir, "generate --prompt-ids 1 --model " + dir}) {
    expect_error(tidal(cmd), "num_layers 100000000 ('num_hidden_layers') is out of range");
    expect_error(tidal(cmd), "its weights alone would take ~1.82e+13 bytes (16.5 TiB in f32)");
  }
}

TEST(Cli, GeneratedTextFollowsThePrompt) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  const CliRun r = tidal("generate --model " + kStories +
                         " --prompt 'Once upon' --max-new-tokens 4 --temperature 0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, " a time, there\n");  // the model's "▁a": its space is kept after the prompt
}

TEST(Cli, RunningOutIsAFinishReason) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  const std::string base =
      "generate --model " + kStories + " --prompt '' --temperature 0 --ignore-eos";
  const CliRun kv = tidal(base + " --max-new-tokens 600 --kv-capacity 64");
  EXPECT_EQ(kv.exit_code, 0) << kv.err;
  EXPECT_NE(kv.err.find("finish: kv_capacity"), std::string::npos) << kv.err;
  EXPECT_NE(kv.err.find("KV cache: 64 of 64 tokens (80.00 KiB of 80.00 KiB"), std::string::npos)
      << kv.err;
  EXPECT_GT(kv.out.size(), 100u);
  const CliRun ctx = tidal(base + " --max-new-tokens 600");
  EXPECT_EQ(ctx.exit_code, 0) << ctx.err;
  EXPECT_NE(ctx.err.find("finish: context"), std::string::npos) << ctx.err;
  EXPECT_NE(ctx.err.find("KV cache: 512 of 512 tokens"), std::string::npos) << ctx.err;
}

// stories260K's checkpoint with model.norm.weight set to NaN (every logit NaN).
std::string nan_checkpoint() {
  const std::string dir = testing::temp_dir("nan");
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json"}) {
    testing::write_file(dir + "/" + f, testing::read_file(kStories + "/" + f));
  }
  std::string st = testing::read_file(kStories + "/model.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(st[size_t(i)]);
  const auto header = nlohmann::json::parse(st.substr(8, n));
  const auto& offsets = header.at("model.norm.weight").at("data_offsets");
  for (size_t i = 8 + n + offsets[0].get<size_t>(); i < 8 + n + offsets[1].get<size_t>(); ++i) {
    st[i] = char(0xFF);  // 0xFFFFFFFF is a NaN
  }
  testing::write_file(dir + "/model.safetensors", st);
  return dir;
}

TEST(Cli, NothingFailsSilently) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  const std::string gen = "generate --model " + kStories + " --prompt '' --max-new-tokens 20";
  // Output that cannot be written: a full disk, a closed pipe (text streamed, or ids at the end).
  expect_error(tidal(gen, "/dev/full"), "cannot write to stdout: No space left on device");
  expect_error(tidal("tokenize --model " + kStories + " --text hi", "/dev/full"),
               "cannot write to stdout");
  expect_error(tidal_to_closed_pipe(gen), "cannot write to stdout: Broken pipe");
  expect_error(tidal_to_closed_pipe(gen + " --print-ids"), "cannot write to stdout");
  // Non-finite logits stop the run, naming the step.
  expect_error(tidal("generate --model " + nan_checkpoint() + " --prompt 'Once'"),
               "non-finite logits (NaN or infinity) at step 0 of the generation (position 1)");
  // Seeds are the u64 range, not wrapped into it.
  expect_error(tidal(gen + " --seed -1"), "--seed: '-1' is not a seed");
  expect_error(tidal(gen + " --seed 18446744073709551616"), "is not a seed");
  EXPECT_EQ(tidal(gen + " --seed 18446744073709551615").exit_code, 0);
  // Flags the chosen attention ignores are refused.
  expect_error(tidal(gen + " --granularity shared"),
               "--granularity has no effect with --attention full");
  expect_error(tidal(gen + " --correction-interval 8"), "--correction-interval has no effect");
  // ... and so is a correction interval no pass can follow in the context.
  expect_error(tidal(gen + " --attention tidal --correction-interval 511"),
               "--correction-interval 511 never runs a pass in a context of 512 tokens");
  // Errors about a flag's value name the flag.
  expect_error(tidal("generate --model " + kStories + " --max-new-tokens 0"),
               "--max-new-tokens must be >= 1");
  expect_error(tidal(gen + " --prefill-chunk 0"), "--prefill-chunk 0 is out of range");
  expect_error(tidal(gen + " --top-k -1"), "--top-k must be >= 0");
  expect_error(tidal(gen + " --min-p 2"), "--min-p must be in [0, 1]");
  expect_error(tidal(gen + " --attention quest --budget 8"), "--budget 8 is below one page");
  expect_error(tidal(gen + " --threads 0"), "--threads must be in [1, 1024]");
}

// niah / ppl flags that would do nothing, or only fail after the whole sweep, are refused with
// one line before any work (the embedded model; nothing runs).
TEST(Cli, AccuracyFlagsWithoutEffectAreRefused) {
  expect_error(tidal("ppl --policy full --budget 32"),
               "--budget has no effect with --policy full (it applies to tidal and quest)");
  expect_error(tidal("ppl --policy full,quest --granularity shared"),
               "--granularity has no effect with --policy full,quest (it applies to tidal)");
  expect_error(tidal("niah --policy full --layers 2:-"),
               "--layers has no effect with --policy full");
  expect_error(tidal("niah --min-accuracy 200"),
               "--min-accuracy must be a percent in [0, 100], got 200");
  expect_error(tidal("niah --min-accuracy -5"),
               "--min-accuracy must be a percent in [0, 100], got -5");
  expect_error(tidal("niah --min-accuracy nan"), "got nan");
  expect_error(tidal("ppl --window -3"),
               "--window must be >= 0 (0: tokens / 32, at least 16), got -3");
}

// --needles has a ceiling: every case is made (its whole prompt held) before the first runs, so
// a huge count ran out of memory instead of naming the flag. Refused before any case is made
// (the 1-token length would fail at the first).
TEST(Cli, NeedleCountsAreBounded) {
  for (const std::string cmd : {"niah --policy full", "calibrate --dry-run"}) {
    expect_error(tidal(cmd + " --lengths 1 --needles 1000000000000"),
                 "--needles must be in [1, 1000], got 1000000000000");
    expect_error(tidal(cmd + " --lengths 1 --needles 0"), "--needles must be in [1, 1000], got 0");
  }
}

// A needle depth is a percent: calibrate took --depths 150 and failed only when its cases were
// made (after the tokenizer and both texts loaded) with 'needle depth must be in 0..100 (got
// 150)', naming no flag; niah refused it as --depths before any work. Both do now (the 1-token
// length would fail at the cases).
TEST(Cli, NeedleDepthsAbove100AreRefusedAsTheFlag) {
  for (const std::string cmd : {"niah --policy full", "calibrate --dry-run"}) {
    expect_error(tidal(cmd + " --lengths 1 --depths 50,150"), "--depths: 150 is above 100");
  }
}

// ppl --offset near INT64_MAX: offset + tokens wrapped negative, passed the length check, and
// the run scored tokens read from outside the text.
TEST(Cli, PplOffsetPastTheTextIsRefused) {
  expect_error(tidal("ppl --policy full --tokens 16 --offset 9223372036854775807"),
               "--offset 9223372036854775807 and --tokens 16 need");
  expect_error(tidal("ppl --policy full --tokens 9223372036854775807 --offset 5"),
               "--offset 5 and --tokens 9223372036854775807 need");
}

const std::string kPersuasion = testing::shared_path("text/austen/persuasion.txt");

// The per-token losses of `tidal ppl ARGS --json F`, one list per variant label.
std::map<std::string, std::vector<double>> ppl_losses(const std::string& args) {
  const std::string json = testing::temp_dir("ppl") + "/ppl.json";
  const CliRun r = tidal("ppl --model " + kStories + " --device cpu --text " + kPersuasion + " " +
                         args + " --json " + json);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, std::vector<double>> out;
  if (r.exit_code != 0) return out;
  const nlohmann::json results = nlohmann::json::parse(testing::read_file(json))["results"];
  for (const auto& result : results) {
    out[result["variant"].get<std::string>()] = result["nll"].get<std::vector<double>>();
  }
  return out;
}

// ppl --tokens N scores N tokens: BOS, then N text tokens, each predicted from those before it
// (the last one never fed). It took N - 1 text tokens, so it scored one fewer than asked, and
// a correction interval of N - 2 (the engine's last for a context of N) ran its pass after the
// last scored step, changing nothing.
TEST(Cli, PplScoresTheTokensAsked) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  TIDAL_SKIP_WITHOUT_SHARED("text/austen/persuasion.txt");
  auto nll = ppl_losses("--tokens 40 --policy full");
  ASSERT_EQ(nll.count("full"), 1u);
  EXPECT_EQ(nll["full"].size(), 40u);
  // A pass after step 38 of 39 changes the last loss alone.
  nll = ppl_losses("--tokens 40 --policy tidal --layers 2:- --budget 8 --correction-interval 0,38");
  const std::vector<double>& plain = nll["tidal per-query-head 2:- K=8"];
  const std::vector<double>& corrected = nll["tidal per-query-head 2:- K=8 corr=38"];
  ASSERT_EQ(plain.size(), 40u);
  ASSERT_EQ(corrected.size(), 40u);
  EXPECT_EQ(std::vector<double>(plain.begin(), plain.end() - 1),
            std::vector<double>(corrected.begin(), corrected.end() - 1));
  EXPECT_NE(plain.back(), corrected.back());
  // The model's whole context (512 positions) holds a stream of 512 scored tokens.
  EXPECT_EQ(ppl_losses("--tokens 512 --policy full")["full"].size(), 512u);
  expect_error(tidal("ppl --model " + kStories + " --device cpu --text " + kPersuasion +
                     " --tokens 513 --policy full"),
               "a length of 513 tokens exceeds the model's context of 512");
}

// A quest budget covering the context attends every position, as full does. The harness lowered
// it to the context rounded down to whole pages (31 tokens: one 16-token page, the current one),
// so the row was a much smaller budget than its label, and #wrong failed the run.
TEST(Cli, PplQuestBudgetCoveringTheStreamMatchesFull) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  TIDAL_SKIP_WITHOUT_SHARED("text/austen/persuasion.txt");
  auto nll = ppl_losses("--tokens 31 --policy full,quest --budget 32");
  const std::vector<double>& full = nll["full"];
  const std::vector<double>& quest = nll["quest K=32"];
  ASSERT_EQ(full.size(), 31u);
  ASSERT_EQ(quest.size(), 31u);
  for (size_t i = 0; i < full.size(); ++i) {
    EXPECT_NEAR(quest[i], full[i], 1e-4) << "token " << i;
  }
}

// A needle case holds its prefilled prompt in one sequence and decodes a policy's answer in each
// other: --max-batch 1 leaves none. niah refused it only at the first case, after printing its
// table's header and loading the model; calibrate after its start line (two lines). Both refuse it
// with their other flag checks now, before any case is made (the 1-token length fails there).
TEST(Cli, NeedleCommandsRefuseOneSequenceFirst) {
  TIDAL_SKIP_WITHOUT_SHARED("text/austen/persuasion.txt");
  const std::string both = " --device cpu --haystack " + kPersuasion + " --depths 50 --needles 1 ";
  for (const std::string& cmd :
       {"niah" + both + "--policy full ",
        "calibrate" + both + "--first-layers 2 --max-reselect 0 --ppl-tokens 32 --dry-run "}) {
    SCOPED_TRACE(cmd);
    const std::string error =
        "--max-batch must be >= 2 (a needle case's prompt and a policy's answer), got ";
    CliRun r = tidal(cmd + "--lengths 128 --max-batch 1");
    expect_error(r, error + "1");
    EXPECT_EQ(r.out, "");
    expect_error(tidal(cmd + "--lengths 1 --max-batch 1"), error + "1");
    expect_error(tidal(cmd + "--lengths 1 --max-batch 0"), error + "0");
  }
}

// A length or depth listed twice ran its cases once (their results share a key) but printed
// niah's rows and depth columns twice, and counted calibrate's cases twice ('needle: cases
// retrieved of 2' for one case); a first layer listed twice ranked its candidate twice. Each is
// refused before any work, naming the value.
TEST(Cli, ListsWithAValueTwiceAreRefused) {
  TIDAL_SKIP_WITHOUT_SHARED("text/austen/persuasion.txt");
  const std::string niah =
      "niah --device cpu --haystack " + kPersuasion + " --needles 1 --policy full ";
  const std::string calibrate = "calibrate --device cpu --haystack " + kPersuasion +
                                " --needles 1 --max-reselect 0 --ppl-tokens 32 --dry-run ";
  const struct {
    std::string args;
    const char* error;
  } cases[] = {
      {niah + "--lengths 128,128 --depths 50", "--lengths: 128 is listed twice"},
      {niah + "--lengths 128 --depths 50,50", "--depths: 50 is listed twice"},
      {calibrate + "--lengths 128,128 --depths 50 --first-layers 2",
       "--lengths: 128 is listed twice"},
      {calibrate + "--lengths 128 --depths 0-50,50 --first-layers 2",
       "--depths: 50 is listed twice ('0-50' and '50')"},
      {calibrate + "--lengths 128 --depths 50 --first-layers 2,2",
       "--first-layers: 2 is listed twice"},
  };
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.args);
    const CliRun r = tidal(tc.args);
    expect_error(r, tc.error);
    EXPECT_EQ(r.out, "");
  }
}

// A short calibration on the embedded model (a second or two on the CPU): one needle case, full
// and two candidates, a 32-token perplexity stream; its flags end with a space.
const std::string kCalibrate =
    "calibrate --device cpu --lengths 128 --depths 50 --needles 1 --budget 16 --first-layers 2 "
    "--max-reselect 0 --ppl-tokens 32 --dry-run ";
const std::string kCalibrateRun = kCalibrate + "--haystack " + kPersuasion + " ";

// --resume of a JSON that parses but is not the command's (an array, no settings, results of
// the wrong types) aborted with an uncaught nlohmann::json type_error (exit 134) where it was
// read; each is now one error line naming the file.
TEST(Cli, MalformedResumeFilesAreRefused) {
  TIDAL_SKIP_WITHOUT_SHARED("text/austen/persuasion.txt");
  const std::string dir = testing::temp_dir("resume");
  const std::string ppl_run = "ppl --model " + kStories + " --device cpu --text " + kPersuasion +
                              " --tokens 16 --policy full --resume ";
  const std::string niah_run = "niah --device cpu --haystack " + kPersuasion +
                               " --lengths 128 --depths 50 --needles 1 --policy full --resume ";
  const std::map<std::string, std::string> runs = {
      {"ppl", ppl_run}, {"niah", niah_run}, {"calibrate", kCalibrateRun + "--resume "}};
  const struct {
    const char* name;
    const char* text;  // {C}: the command's name
  } files[] = {
      {"array", "[1, 2]"},
      {"no_settings", R"({"command": "{C}", "results": []})"},
      {"settings_array", R"({"command": "{C}", "settings": [], "results": []})"},
      {"results_object", R"({"command": "{C}", "settings": {}, "results": {"a": 1}})"},
      {"result_number", R"({"command": "{C}", "settings": {}, "results": [1]})"},
      {"result_fields", R"({"command": "{C}", "settings": {}, "results": [{"variant": 3}]})"},
  };
  for (const std::string command : {"ppl", "niah", "calibrate"}) {
    if (command == "ppl" && !testing::shared_exists("models/stories260K/hf")) {
      continue;
    }
    for (const auto& f : files) {
      const std::string path = dir + "/" + command + "_" + f.name + ".json";
      std::string text = f.text;
      const size_t at = text.find("{C}");
      if (at != std::string::npos) {
        text.replace(at, 3, command);
      }
      testing::write_file(path, text);
      SCOPED_TRACE(command + " " + f.name);
      expect_error(tidal(runs.at(command) + path), "--resume " + path + ": ");
    }
  }
}

// calibrate's --resume file keeps its work in 'state' (by case and candidate, not a list of
// results): a file whose state was not what calibrate writes aborted with an uncaught
// nlohmann::json type_error (exit 134), or was read as something else (a perplexity that is not
// a number as not measured, a layer probe's sums of another size past their end). Each is one
// error line naming the file and the entry.
TEST(Cli, MalformedCalibrateResumeStateIsRefused) {
  TIDAL_SKIP_WITHOUT_SHARED("text/austen/persuasion.txt");
  const std::string dir = testing::temp_dir("resume_calibrate");
  const CliRun r = tidal(kCalibrateRun + "--json " + dir + "/good.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json good = nlohmann::json::parse(testing::read_file(dir + "/good.json"));
  const std::string needle = "full|128|50|0", probe = "128|50|0";
  ASSERT_TRUE(good["state"]["needle"].contains(needle)) << good["state"].dump();
  ASSERT_TRUE(good["state"]["probe"].contains(probe)) << good["state"].dump();
  const struct {
    const char* name;
    const char* pointer;  // the entry replaced
    nlohmann::json value;
    const char* error;
  } cases[] = {
      {"state_list", "/state", nlohmann::json::array(), "its 'state' is not an object"},
      {"needle_list", "/state/needle", nlohmann::json::array(), "its 'state.needle' is not"},
      {"needle_number", "/state/needle/full|128|50|0", 3, "state.needle[\"full|128|50|0\"] is"},
      {"retrieved_text", "/state/needle/full|128|50|0/retrieved", "yes",
       "state.needle[\"full|128|50|0\"].retrieved is not true or false"},
      {"kv_rows_text", "/state/needle/full|128|50|0/kv_rows", "x", ".kv_rows is not a number"},
      {"probe_layers_text", "/state/probe/128|50|0/layers", "10", ".layers is not a number"},
      {"probe_mass_text", "/state/probe/128|50|0/mass_max", nlohmann::json::array({"a"}),
       ".mass_max is not a list of numbers"},
      {"ppl_text", "/state/ppl/full", "73", "state.ppl[\"full\"] is not a number or null"},
      // A probe's sums are read by layer (mass_max[l], overlap_sum[a * layers + b]): sized
      // otherwise they were read past their end, or printed as a probe of 3 layers.
      {"probe_mass_short", "/state/probe/128|50|0/mass_max", nlohmann::json::array({0.1}),
       "state.probe[\"128|50|0\"].mass_max holds 1 values, not 10 (one per layer)"},
      {"probe_overlap_short", "/state/probe/128|50|0/overlap_sum", nlohmann::json::array({0.1}),
       ".overlap_sum holds 1 values, not 100 (one per pair of layers)"},
      {"probe_layers", "/state/probe/128|50|0/layers", 3,
       "state.probe[\"128|50|0\"] holds the sums of 3 layers and 4 heads, not this model's 10 "
       "and 4"},
      {"probe_heads", "/state/probe/128|50|0/heads", 8, "sums of 10 layers and 8 heads"},
      {"probe_steps", "/state/probe/128|50|0/steps", -1, ".steps is not a count of steps"},
  };
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.name);
    nlohmann::json bad = good;
    bad[nlohmann::json::json_pointer(tc.pointer)] = tc.value;
    const std::string path = dir + "/" + tc.name + ".json";
    testing::write_file(path, bad.dump());
    const CliRun run = tidal(kCalibrateRun + "--resume " + path);
    expect_error(run, "--resume " + path + ": ");
    EXPECT_NE(run.err.find(tc.error), std::string::npos) << run.err;
  }
}

// --resume of a run on another haystack or model kept its results as this run's: niah's cases
// (city, number) are drawn from the seed alone, so the needle check never saw another haystack,
// and ppl's token checksum does not see another model with the same tokenizer. calibrate
// compared neither, nor its perplexity text.
TEST(Cli, ResumingAnotherHaystackOrModelIsRefused) {
  TIDAL_SKIP_WITHOUT_SHARED("text/austen/persuasion.txt");
  TIDAL_SKIP_WITHOUT_SHARED("text/austen/emma.txt");
  const std::string dir = testing::temp_dir("resume_other");
  const std::string niah = "niah --device cpu --lengths 128 --depths 50 --needles 1 --policy full ";
  CliRun r = tidal(niah + "--haystack " + kPersuasion + " --json " + dir + "/niah.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_error(tidal(niah + "--haystack " + testing::shared_path("text/austen/emma.txt") +
                     " --resume " + dir + "/niah.json"),
               "it ran with another haystack");
  // The same file by another spelling of its path is the same haystack.
  r = tidal(niah + "--haystack " + testing::shared_path("text/austen/../austen/persuasion.txt") +
            " --resume " + dir + "/niah.json");
  EXPECT_EQ(r.exit_code, 0) << r.err;

  const std::string emma = testing::shared_path("text/austen/emma.txt");
  r = tidal(kCalibrateRun + "--json " + dir + "/calibrate.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string resume = " --resume " + dir + "/calibrate.json";
  expect_error(tidal(kCalibrate + "--haystack " + emma + " --ppl-text " + kPersuasion + resume),
               "it ran with another haystack");
  expect_error(tidal(kCalibrateRun + "--ppl-text " + emma + resume),
               "it ran with another ppl_text");
  const std::string model_copy = dir + "/tiny_copy";
  const std::string tiny = std::string(TIDAL_SOURCE_DIR) + "/model/tidal-tiny-16k";
  ASSERT_EQ(std::system(("cp -r " + tiny + " " + model_copy).c_str()), 0);
  expect_error(tidal(kCalibrateRun + "--model " + model_copy + resume),
               "it ran with another model");
  r = tidal(kCalibrate + "--haystack " +
            testing::shared_path("text/austen/../austen/persuasion.txt") + resume);
  EXPECT_EQ(r.exit_code, 0) << r.err;

  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  const std::string copy = dir + "/stories_copy";
  ASSERT_EQ(std::system(("cp -r " + kStories + " " + copy).c_str()), 0);
  const std::string ppl = "ppl --device cpu --text " + kPersuasion + " --tokens 16 --policy full ";
  r = tidal(ppl + "--model " + kStories + " --json " + dir + "/ppl.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_error(tidal(ppl + "--model " + copy + " --resume " + dir + "/ppl.json"),
               "it ran with another model");
}

// An unwritable --json (or a --png-dir that cannot be made) is refused before any work: ppl
// found it after every stream had run and exited without printing the table, niah after the
// header and the first case, and both made their pictures' folder only at the end. Shown here
// with weights that cannot load: the error is the output's, not the weights'.
TEST(Cli, UnwritableOutputIsRefusedBeforeTheRun) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  TIDAL_SKIP_WITHOUT_SHARED("text/austen/persuasion.txt");
  const std::string dir = testing::temp_dir("unwritable");
  const std::string model = dir + "/broken_weights";
  ASSERT_EQ(std::system(("cp -r " + kStories + " " + model).c_str()), 0);
  testing::write_file(model + "/model.safetensors", "not safetensors");
  testing::write_file(dir + "/a_file", "");
  const std::string no_dir = dir + "/missing/out.json";
  const std::string ppl = "ppl --model " + model + " --device cpu --text " + kPersuasion +
                          " --tokens 16 --policy full ";
  CliRun r = tidal(ppl + "--json " + no_dir);
  expect_error(r, no_dir);
  EXPECT_EQ(r.out, "");
  expect_error(tidal(ppl + "--png-dir " + dir + "/a_file/png"), "--png-dir " + dir + "/a_file/png");
  const std::string niah = "niah --device cpu --haystack " + kPersuasion +
                           " --lengths 128 --depths 50 --needles 1 --policy full ";
  r = tidal(niah + "--json " + no_dir);
  expect_error(r, no_dir);
  EXPECT_EQ(r.out, "");
  r = tidal(niah + "--png-dir " + dir + "/a_file/png");
  expect_error(r, "--png-dir " + dir + "/a_file/png");
  EXPECT_EQ(r.out, "");
  // Settings the engine refuses leave no output behind.
  expect_error(
      tidal(niah + "--max-batch 70000 --json " + dir + "/niah.json --png-dir " + dir + "/p1"),
      "--max-batch 70000 is out of range");
  expect_error(tidal(ppl + "--max-batch 0 --json " + dir + "/ppl.json --png-dir " + dir + "/p2"),
               "--max-batch 0 is out of range");
  for (const char* made : {"niah.json", "ppl.json", "p1", "p2"}) {
    EXPECT_NE(access((dir + "/" + made).c_str(), F_OK), 0) << made;
  }
}

// niah decodes few tokens a case (--gen-tokens 12: 11 decode steps after the prefill's token),
// and a correction pass helps only the steps after it: an interval of 11 or more (the README's
// example is 64) never ran one that an answer read, and its rows repeated the uncorrected ones.
TEST(Cli, NiahCorrectionIntervalsThatNeverRunAreRefused) {
  TIDAL_SKIP_WITHOUT_SHARED("text/austen/persuasion.txt");
  const std::string niah = "niah --device cpu --haystack " + kPersuasion +
                           " --lengths 128 --depths 50 --needles 1 --policy tidal --budget 16 ";
  expect_error(tidal(niah + "--correction-interval 0,64"),
               "--correction-interval 64 never runs a pass that an answer reads: a case decodes "
               "11 tokens (--gen-tokens 12, the first from the prefill): at most 10, or 0 (off)");
  expect_error(tidal(niah + "--correction-interval 11"), "--correction-interval 11 never runs");
  expect_error(tidal(niah + "--gen-tokens 1 --correction-interval 1"), "only 0 (off)");
  // One more answer token, and 11 runs a pass before the last step.
  const CliRun r = tidal(niah + "--gen-tokens 13 --correction-interval 11");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// A budget at or above the context attends every position; one above 2^28 (the engine's largest
// max_budget) failed with 'max_budget 999999999 is out of range', a setting these commands do
// not have, though 1000000 ran.
TEST(Cli, AccuracyBudgetsAboveTheContextRun) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  TIDAL_SKIP_WITHOUT_SHARED("text/austen/persuasion.txt");
  auto nll = ppl_losses("--tokens 16 --policy full,tidal,quest --budget 999999999");
  ASSERT_EQ(nll.size(), 3u);
  EXPECT_EQ(nll["tidal per-query-head 2:- default K=999999999"], nll["full"]);
}

// ppl's curves average the losses over windows of --window tokens; a window longer than the
// tokens scored left every curve without a point, and the pictures were empty axes. The default
// (tokens / 32, at least 16) did so below 16 tokens; an explicit one is refused.
TEST(Cli, PplWindowsFitTheStream) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  TIDAL_SKIP_WITHOUT_SHARED("text/austen/persuasion.txt");
  const std::string dir = testing::temp_dir("ppl_window");
  const std::string ppl = "ppl --model " + kStories + " --device cpu --text " + kPersuasion +
                          " --tokens 8 --policy full ";
  expect_error(tidal(ppl + "--window 9 --png-dir " + dir + "/explicit"),
               "--window 9 is longer than the 8 tokens scored (--tokens)");
  // The default window is the whole stream here: the same picture as --window 8.
  CliRun r = tidal(ppl + "--png-dir " + dir + "/default");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = tidal(ppl + "--window 8 --png-dir " + dir + "/eight");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(testing::read_file(dir + "/default/ppl.png") ==
              testing::read_file(dir + "/eight/ppl.png"))
      << "the default window's picture is not --window 8's";
}

// ppl draws nothing at random: its --seed ('needle cases (cities, numbers, haystack offsets)')
// was taken and did nothing. It is niah's and calibrate's only.
TEST(Cli, PplHasNoSeed) {
  expect_error(tidal("ppl --policy full --tokens 1 --seed 3"), "--seed");
  const CliRun help = tidal("ppl --help");
  EXPECT_EQ(help.out.find("--seed"), std::string::npos) << help.out;
  EXPECT_EQ(help.out.find("prefilled prompt"), std::string::npos) << help.out;
  EXPECT_NE(tidal("niah --help").out.find("--seed"), std::string::npos);
}

// calibrate's tolerances: a negative or non-finite one made every candidate miss full, and the
// run silently fell back to the most accurate candidate. Refused before any case is made (the
// 1-token length would fail later).
TEST(Cli, CalibrateTolerancesAreChecked) {
  const std::string run = "calibrate --dry-run --lengths 1 ";
  expect_error(tidal(run + "--miss-tolerance -1"), "--miss-tolerance must be >= 0, got -1");
  expect_error(tidal(run + "--ppl-tolerance -0.5"),
               "--ppl-tolerance must be a finite number >= 0, got -0.5");
  expect_error(tidal(run + "--ppl-tolerance nan"), "--ppl-tolerance must be");
  expect_error(tidal(run + "--ppl-tolerance inf"), "--ppl-tolerance must be");
}

// --ppl-tokens 0 measures no perplexity: --ppl-text (and --ppl-tolerance) would silently do
// nothing, so they are refused beside it, before any case is made.
TEST(Cli, CalibratePerplexityFlagsNeedAStream) {
  const std::string run = "calibrate --dry-run --lengths 1 --ppl-tokens 0 ";
  expect_error(tidal(run + "--ppl-text /some/text.txt"),
               "--ppl-text has no effect with --ppl-tokens 0 (no perplexity is measured)");
  expect_error(tidal(run + "--ppl-tolerance 0.1"),
               "--ppl-tolerance has no effect with --ppl-tokens 0 (no perplexity is measured)");
  // Without them --ppl-tokens 0 passes the checks (and the 1-token length fails later).
  expect_error(tidal(run), "a 1-token case leaves no room");
}

// calibrate's outputs were found unwritable only where they were first written: --json after
// the first needle case (its candidates and probe), --out (the policy file) after the whole
// sweep, the table printed and exit 1. Both are checked before the model loads now, once the
// engine's settings pass, as niah's and ppl's are: shown with weights that cannot load.
TEST(Cli, CalibrateOutputsAreCheckedBeforeTheRun) {
  TIDAL_SKIP_WITHOUT_SHARED("text/austen/persuasion.txt");
  const std::string dir = testing::temp_dir("calibrate_outputs");
  const std::string model = dir + "/broken_weights";
  const std::string tiny = std::string(TIDAL_SOURCE_DIR) + "/model/tidal-tiny-16k";
  ASSERT_EQ(std::system(("cp -r " + tiny + " " + model).c_str()), 0);
  testing::write_file(model + "/model.safetensors", "not safetensors");
  const std::string flags = " --device cpu --haystack " + kPersuasion +
                            " --lengths 128 --depths 50 --needles 1 --budget 16 --first-layers 2 "
                            "--max-reselect 0 --ppl-tokens 32 ";
  const std::string run = "calibrate --model " + model + flags;
  const std::string no_dir = dir + "/missing/out.json";
  CliRun r = tidal(run + "--dry-run --json " + no_dir);
  expect_error(r, no_dir);
  EXPECT_EQ(r.out, "");
  r = tidal(run + "--out " + no_dir);
  expect_error(r, "--out " + no_dir + ": ");
  EXPECT_EQ(r.out, "");
  // A folder cannot be the policy file (and no '<folder>.tmp' is left beside it).
  ASSERT_EQ(std::system(("mkdir " + dir + "/folder").c_str()), 0);
  r = tidal(run + "--out " + dir + "/folder");
  expect_error(r, "--out " + dir + "/folder: it is a directory");
  EXPECT_EQ(r.out, "");
  EXPECT_NE(access((dir + "/folder.tmp").c_str(), F_OK), 0);
  // Settings the engine refuses leave no output behind.
  expect_error(tidal(run + "--max-batch 70000 --json " + dir + "/calibrate.json"),
               "--max-batch 70000 is out of range");
  EXPECT_NE(access((dir + "/calibrate.json").c_str(), F_OK), 0);
  // With weights that load, the policy file is written, and the check leaves nothing beside it.
  r = tidal("calibrate" + flags + "--out " + dir + "/policy.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(testing::read_file(dir + "/policy.json").find("sparse_start"), std::string::npos);
  EXPECT_NE(access((dir + "/policy.json.tmp").c_str(), F_OK), 0);
}

// --ppl-tokens 1 (a stream of BOS alone, when calibrate scored --ppl-tokens - 1 tokens) failed
// after every needle case had run ('perplexity needs at least 2 tokens', under its start line).
// It is refused with the flags, as tidal ppl refuses --tokens 1.
TEST(Cli, CalibrateRefusesAStreamWithNothingToPredictFirst) {
  TIDAL_SKIP_WITHOUT_SHARED("text/austen/persuasion.txt");
  const std::string run = "calibrate --device cpu --haystack " + kPersuasion +
                          " --lengths 128 --depths 50 --needles 1 --first-layers 2 "
                          "--max-reselect 0 --dry-run --ppl-tokens ";
  const std::string error =
      "--ppl-tokens must be 0 (no perplexity) or >= 2 (as tidal ppl's --tokens), got ";
  const CliRun r = tidal(run + "1");
  expect_error(r, error + "1");
  EXPECT_EQ(r.out, "");
  expect_error(tidal(run + "-3"), error + "-3");
  EXPECT_EQ(tidal(run + "2").exit_code, 0);
}

// calibrate's --ppl-tokens N scored N - 1 tokens (BOS and N - 1 text tokens), where tidal ppl
// --tokens N scores N (BOS and N text tokens, the last never fed): the same text and count gave
// another perplexity. calibrate scores ppl's stream now, and a --resume file from before, whose
// perplexities scored the shorter stream, is refused.
TEST(Cli, CalibrateScoresThePerplexityStreamOfPpl) {
  TIDAL_SKIP_WITHOUT_SHARED("text/austen/persuasion.txt");
  const std::string dir = testing::temp_dir("calibrate_ppl");
  CliRun r = tidal("ppl --device cpu --text " + kPersuasion + " --tokens 32 --policy full --json " +
                   dir + "/ppl.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = tidal(kCalibrateRun + "--json " + dir + "/calibrate.json");  // --ppl-tokens 32
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json ppl = nlohmann::json::parse(testing::read_file(dir + "/ppl.json"));
  nlohmann::json calibrate = nlohmann::json::parse(testing::read_file(dir + "/calibrate.json"));
  ASSERT_EQ(ppl["results"].size(), 1u);
  EXPECT_EQ(ppl["results"][0]["nll"].size(), 32u);
  ASSERT_TRUE(calibrate["state"]["ppl"]["full"].is_number()) << calibrate["state"].dump();
  const double want = ppl["results"][0]["ppl"].get<double>();
  EXPECT_NEAR(calibrate["state"]["ppl"]["full"].get<double>(), want, 1e-9 * want);
  // A file whose settings do not name ppl's stream (one written before) is not resumed.
  ASSERT_TRUE(calibrate["settings"].contains("ppl_checksum")) << calibrate["settings"].dump();
  calibrate["settings"].erase("ppl_checksum");
  testing::write_file(dir + "/before.json", calibrate.dump());
  expect_error(tidal(kCalibrateRun + "--resume " + dir + "/before.json"),
               "--resume " + dir + "/before.json: it scored other perplexity tokens");
}

// --dry-run writes no policy file, so --out beside it did nothing: the run ended 0 with no file
// where the user asked for one. Refused with the flags (the 1-token length would fail later).
TEST(Cli, CalibrateOutWithDryRunIsRefused) {
  expect_error(tidal("calibrate --dry-run --lengths 1 --out /some/policy.json"),
               "--out has no effect with --dry-run (no policy file is written)");
}

// A perplexity stream longer than the model's context was refused as 'a length of 20000 tokens
// exceeds the model's context of 16384', a length no --lengths gave (and only after the cases
// were made: the 1-token length fails there). It names the flag now, before the cases.
TEST(Cli, CalibrateStreamLongerThanTheModelNamesTheFlag) {
  expect_error(tidal("calibrate --dry-run --lengths 1 --ppl-tokens 20000"),
               "--ppl-tokens 20000 exceeds the model's context of 16384");
}

TEST(Cli, ThreadCountsGiveTheSameTokens) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  const std::string gen = "generate --model " + kStories +
                          " --prompt 'Once upon a time' --max-new-tokens 40 --temperature 0.8 "
                          "--seed 3 --print-ids --attention tidal --budget 16";
  const CliRun one = tidal(gen + " --threads 1"), three = tidal(gen + " --threads 3");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(one.out, three.out);
  EXPECT_NE(three.err.find("device cpu, f32, 3 threads"), std::string::npos) << three.err;
}

}  // namespace
}  // namespace tidal
