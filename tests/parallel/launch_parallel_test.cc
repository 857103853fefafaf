// SPDX-License-Identifier: Apache-2.0
// `tidal generate --tp/--pp` under mpirun, and failures of a rank, as a user meets them: the
// command prints the same tokens as one process (once: only rank 0 prints), with the KV cache in
// the activations' dtype or in FP8; `--tp 1` without mpirun takes the distributed path to the
// same tokens; a rank that fails to load, dies, or hits a fatal error ends the whole job with a
// non-zero exit and a message naming the rank, within seconds, and rank 0's line comes out even
// when rank 0 prints last; `tidal bench` under tp times the collectives and halves the floor's
// bytes. Each case spawns mpirun (with a timeout, so a hang fails instead of stalling CI).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "runtime/device.h"
#include "tests/parallel/parallel_testing.h"
#include "tests/testing/safetensors_writer.h"
#include "tests/testing/testing.h"

namespace tidal {
namespace {

constexpr const char* kStories = "models/stories260K/hf";

struct Outcome {
  int exit_code = -1;
  std::string output;  // stdout and stderr
  double seconds = 0;
};

// Runs `command` through the shell, killed after `limit` seconds.
Outcome run(const std::string& command, int limit = 90) {
  Outcome r;
  const auto t0 = std::chrono::steady_clock::now();
  const std::string full = "timeout -k 5 " + std::to_string(limit) + " " + command + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::string mpirun(int np) {
  return std::string(TIDAL_MPIEXEC) + " -np " + std::to_string(np) +
         " --oversubscribe --allow-run-as-root ";
}

std::string generate_args(const std::string& model) {
  return std::string(TIDAL_BINARY) + " generate --model " + model +
         " --prompt-ids 1,403,407,261 --max-new-tokens 40 --temperature 0 --print-ids"
         " --attention tidal --budget 8 --granularity shared --agreement exact";
}

// The first line of stdout that is all ids.
std::string ids_line(const std::string& output) {
  static const std::regex ids("^[0-9]+( [0-9]+)+$");
  size_t at = 0;
  while (at < output.size()) {
    const size_t end = output.find('\n', at);
    const std::string line =
        output.substr(at, end == std::string::npos ? std::string::npos : end - at);
    if (std::regex_match(line, ids)) return line;
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return "";
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// With the KV cache in the activations' dtype and in FP8 (each rank quantizes the rows of its
// own KV heads or layers).
TEST(LaunchParallel, TpAndPpPrintOneProcessesTokensOnceFromRankZero) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  for (const char* kv : {"", " --kv-dtype fp8"}) {
    const std::string args = generate_args(testing::shared_path(kStories)) + kv;
    const Outcome one = run(args);
    ASSERT_EQ(one.exit_code, 0) << one.output;
    const std::string want = ids_line(one.output);
    ASSERT_FALSE(want.empty()) << one.output;
    for (const char* layout : {" --tp 2", " --pp 2"}) {
      const Outcome r = run(mpirun(2) + args + layout);
      EXPECT_EQ(r.exit_code, 0) << layout << kv << "\n" << r.output;
      EXPECT_EQ(ids_line(r.output), want) << layout << kv << "\n" << r.output;
      EXPECT_EQ(count_of(r.output, want), 1u) << "only rank 0 prints\n" << r.output;
      EXPECT_EQ(count_of(r.output, "tidal: prefill"), 1u) << r.output;
    }
  }
}

// `generate --preset` under every layout of 2 and 4 ranks prints one rank's tokens: each rank
// holds its shard of the same random draw (model/weights.h), so the layouts run one model.
TEST(LaunchParallel, PresetTokensUnderEveryLayoutEqualOneRank) {
  for (const char* policy :
       {" --attention full", " --attention tidal --budget 8 --granularity shared --agreement exact",
        " --attention tidal --budget 8 --granularity per-kv-head"}) {
    const std::string args = std::string(TIDAL_BINARY) +
                             " generate --preset tiny --weights-seed 3 --device cpu"
                             " --prompt-ids 1,5,9,200,31 --max-new-tokens 24 --temperature 0"
                             " --print-ids" +
                             policy;
    const Outcome one = run(args);
    ASSERT_EQ(one.exit_code, 0) << one.output;
    const std::string want = ids_line(one.output);
    ASSERT_FALSE(want.empty()) << one.output;
    for (const auto& [np, layout] : std::vector<std::pair<int, std::string>>{
             {2, " --tp 2"}, {2, " --pp 2"}, {4, " --tp 2 --pp 2"}, {4, " --tp 4"}}) {
      const Outcome r = run(mpirun(np) + args + layout);
      EXPECT_EQ(r.exit_code, 0) << layout << policy << "\n" << r.output;
      EXPECT_EQ(ids_line(r.output), want) << layout << policy << "\n" << r.output;
    }
  }
}

// `tidal bench` rows under a layout, keyed "policy/agree", from its --json file.
std::map<std::string, nlohmann::json> bench_rows(const std::string& launcher,
                                                 const std::string& layout) {
  const std::string json = testing::temp_dir("bench") + "/rows.json";
  const Outcome r = run(launcher + TIDAL_BINARY +
                        " bench --device cpu --preset tiny --context 300 --batch 1 --budget 32"
                        " --policy full,tidal --granularity shared,per-query-head"
                        " --agreement approx,exact,approx"
                        " --steps 2 --warmup 1 --json " +
                        json + layout);
  EXPECT_EQ(r.exit_code, 0) << layout << "\n" << r.output;
  std::map<std::string, nlohmann::json> rows;
  std::ifstream in(json);
  EXPECT_TRUE(in.good()) << "no " << json << "\n" << r.output;
  if (!in) return rows;
  const nlohmann::json table = nlohmann::json::parse(in);
  for (const nlohmann::json& row : table.at("rows")) {
    rows[row.at("policy").get<std::string>() + "/" + row.at("agree").get<std::string>()] = row;
  }
  std::remove(json.c_str());
  return rows;
}

// Under --tp the breakdown step times rank 0's all-reduces (a share of the step) and the list
// agreement of each selection layer, approx and exact; the floor counts one TP rank's bytes
// (about half the model at tp 2), and a pipeline's stages add up to the whole; the memory of the
// largest rank is below one rank's.
TEST(LaunchParallel, BenchUnderTpTimesCollectivesAndSplitsTheFloor) {
  const auto one = bench_rows("", "");
  const auto tp2 = bench_rows(mpirun(2), " --tp 2");
  const auto pp2 = bench_rows(mpirun(2), " --pp 2");
  for (const auto* rows : {&one, &tp2, &pp2}) {
    // full, tidal shared approx and exact (approx named twice: one row), tidal per-query-head.
    ASSERT_EQ(rows->size(), 4u);
    ASSERT_EQ(rows->count("full/-"), 1u);
    ASSERT_EQ(rows->count("tidal/approx"), 1u);
    ASSERT_EQ(rows->count("tidal/exact"), 1u);
    ASSERT_EQ(rows->count("tidal/-"), 1u);
  }
  for (const auto& [name, row] : one) {
    EXPECT_TRUE(row.at("ar_ms").is_null()) << name << " on one rank: " << row;
    EXPECT_TRUE(row.at("agree_us/sel").is_null()) << name << " on one rank: " << row;
  }
  for (const auto& [name, row] : tp2) {
    EXPECT_GT(row.at("ar_ms").get<double>(), 0) << name << ": " << row;
    EXPECT_GT(row.at("ar_us/L").get<double>(), 0) << name << ": " << row;
    EXPECT_GT(row.at("%ar").get<double>(), 0) << name << ": " << row;
    EXPECT_LT(row.at("%ar").get<double>(), 100) << name << ": " << row;
    if (name == "full/-" || name == "tidal/-") {
      // No selection layer, or per-query-head lists (each on one rank): nothing agreed.
      EXPECT_TRUE(row.at("agree_us/sel").is_null()) << name << ": " << row;
    } else {
      EXPECT_GT(row.at("agree_us/sel").get<double>(), 0) << name << ": " << row;
    }
    const double whole = one.at(name).at("GB").get<double>(), part = row.at("GB").get<double>();
    EXPECT_GT(part, 0.45 * whole) << name;  // the norms are on every rank: a little over half
    EXPECT_LT(part, 0.55 * whole) << name;
    EXPECT_NEAR(pp2.at(name).at("GB").get<double>(), whole, 1e-3 * whole) << name;
    // Each rank holds a part of the weights and KV cache: the largest is below one rank's all.
    const double all = one.at(name).at("GiB/rank").get<double>();
    EXPECT_LT(row.at("GiB/rank").get<double>(), 0.75 * all) << name;
    EXPECT_LT(pp2.at(name).at("GiB/rank").get<double>(), all) << name;
  }
}

// --tp 1 without mpirun: MPI starts as a singleton and the engine takes the distributed path
// (shard, plan broadcast, vocabulary-parallel sampling) with one rank.
TEST(LaunchParallel, Tp1WithoutMpirunEqualsThePlainPath) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  const std::string args = generate_args(testing::shared_path(kStories));
  const Outcome one = run(args), tp1 = run(args + " --tp 1 --stats");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  EXPECT_EQ(tp1.exit_code, 0) << tp1.output;
  EXPECT_EQ(ids_line(tp1.output), ids_line(one.output)) << tp1.output;
  EXPECT_NE(tp1.output.find("rank 0 of 1 (tp 1 x pp 1)"), std::string::npos) << tp1.output;
}

TEST(LaunchParallel, RanksThatDoNotMatchTpTimesPpAreAClearError) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  const Outcome r = run(mpirun(2) + generate_args(testing::shared_path(kStories)) + " --tp 4");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("tidal: error: --tp 4 x --pp 1 needs 4 ranks; mpirun started 2"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(count_of(r.output, "tidal: error:"), 1u) << "only rank 0 reports\n" << r.output;
}

// mpirun -np 2 without --tp/--pp (or with a command that has no layout): every rank would run
// the whole command alone and print its own output. One error line, from rank 0, instead.
TEST(LaunchParallel, MpirunWithoutALayoutIsOneClearError) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {" generate --preset tiny --device cpu --prompt-ids 1,5,9 --max-new-tokens 4 --print-ids",
       "tidal: error: mpirun started 2 ranks, but generate was given no --tp or --pp"},
      {" bench --device cpu --preset tiny --context 100 --batch 1 --budget 32 --steps 1",
       "tidal: error: mpirun started 2 ranks, but bench was given no --tp or --pp"},
      {" info --preset tiny --device cpu",
       "tidal: error: mpirun started 2 ranks, but info runs as one process"},
  };
  for (const auto& [args, want] : cases) {
    const Outcome r = run(mpirun(2) + TIDAL_BINARY + args);
    EXPECT_NE(r.exit_code, 0) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(want), std::string::npos) << args << "\n" << r.output;
    EXPECT_EQ(count_of(r.output, "tidal: error:"), 1u) << "only rank 0 reports\n" << r.output;
    EXPECT_EQ(ids_line(r.output), "") << r.output;
    EXPECT_EQ(r.output.find("model            tiny"), std::string::npos) << r.output;
  }
}

// A command line CLI11 rejects is rejected by every rank alike, before MPI starts: rank 0 alone
// says so.
TEST(LaunchParallel, ParseErrorsUnderMpirunAreOneLine) {
  for (const char* args : {" generate --tp 2 --no-such-flag",
                           " generate --tp 2 --model a --model b", " no-such-command --tp 2"}) {
    const Outcome r = run(mpirun(2) + TIDAL_BINARY + args);
    EXPECT_NE(r.exit_code, 0) << args << "\n" << r.output;
    EXPECT_EQ(count_of(r.output, "tidal: error:"), 1u) << "only rank 0 reports\n" << r.output;
  }
}

// Flag checks that need no model, under a job: one line, from rank 0 (not one per rank), within
// seconds. bench's --kernel-trace (one rank only) was checked on rank 0 alone, after the others
// had left for the engine's collectives: the job hung without its line.
TEST(LaunchParallel, FlagErrorsAreOneLineFromRankZero) {
  for (const std::string& args :
       {std::string(" generate --tp 2 --device cpu --weights-seed 3 --prompt-ids 1 --print-ids"),
        std::string(" serve --tp 2 --device cpu --listen 127.0.0.1:0 --drain-seconds nan"),
        std::string(" bench --tp 2 --device cpu --preset tiny --context 100 --batch 1 --steps 1"
                    " --kernel-trace /dev/null")}) {
    const Outcome r = run(mpirun(2) + TIDAL_BINARY + args, 60);
    EXPECT_NE(r.exit_code, 0) << args << "\n" << r.output;
    EXPECT_LT(r.seconds, 30.0) << args << "\n" << r.output;
    EXPECT_EQ(count_of(r.output, "tidal: error:"), 1u) << "only rank 0 reports\n" << r.output;
  }
}

// serve --preset under --tp/--pp is refused (the preset serves on one process only). It was
// refused before MPI started, by every rank alike, so every rank printed it (one line per rank),
// and a rank given it alone (mpirun's A : B) printed it without naming itself. Now it is one of
// serve's flag checks, agreed over the ranks: one line from rank 0, naming the rank when the
// ranks differ.
TEST(LaunchParallel, ServePresetUnderTpIsOneLine) {
  const std::string serve = std::string(TIDAL_BINARY) +
                            " serve --tp 2 --device cpu --listen 127.0.0.1:0 --drain-seconds 0";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {mpirun(2) + serve + " --preset tiny",
       "tidal: error: --preset cannot be served under --tp / --pp"},
      {mpirun(1) + serve + " --model " + testing::write_gqa128_model(0) + " : -np 1 " + serve +
           " --preset tiny",
       "tidal: error: rank 1: --preset cannot be served under --tp / --pp"},
  };
  for (const auto& [command, want] : cases) {
    SCOPED_TRACE(command);
    const Outcome r = run(command, 60);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_LT(r.seconds, 30.0) << r.output;
    EXPECT_NE(r.output.find(want), std::string::npos) << r.output;
    EXPECT_EQ(count_of(r.output, "tidal: error:"), 1u) << r.output;
    EXPECT_EQ(r.output.find("serving on"), std::string::npos) << r.output;
  }
}

// mpirun can start ranks with different commands (`mpirun -np 1 A : -np 1 B`), and hosts can hold
// different copies of a model. Settings the ranks must share are compared at start: one error
// line naming the setting (by its flag) and both values, not f16 summed as bf16 (wrong tokens,
// exit 0) or an abort in the middle of the generation (--max-context), or shards of two random
// draws (wrong tokens), or a --preset on one rank and a --model on the other (an abort in MPI),
// or bench's lists of one rank not rank 0's (a hang: the other ranks make rank 0's engines one
// after another from their own lists, so a rank with other engines to make, for a Quest policy or
// a preset rank 0 was not given, waited for ever in a collective the others never joined).
TEST(LaunchParallel, RanksGivenDifferentSettingsAreOneClearError) {
  const std::string dir = testing::write_gqa128_model(0);
  const std::string preset = std::string(TIDAL_BINARY) +
                             " generate --preset tiny --device cpu --prompt-ids 1,5,9"
                             " --max-new-tokens 8 --temperature 0 --print-ids --tp 2";
  const std::string model = std::string(TIDAL_BINARY) + " generate --model " + dir +
                            " --device cpu --prompt-ids 1,2,3 --max-new-tokens 60"
                            " --temperature 0 --print-ids --tp 2";
  const std::string bench = std::string(TIDAL_BINARY) +
                            " bench --device cpu --batch 1 --budget 32 --steps 1 --warmup 0"
                            " --no-breakdown --tp 2 --preset ";
  const std::string tiny = bench + "tiny --context 100";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {mpirun(1) + preset + " --dtype f16 : -np 1 " + preset + " --dtype bf16",
       "tidal: error: ranks differ in dtype: rank 0 has f16, rank 1 has bf16"},
      {mpirun(1) + model + " --kv-capacity 512 : -np 1 " + model +
           " --kv-capacity 512 --max-context 32",
       "tidal: error: ranks differ in --max-context: rank 0 has 512, rank 1 has 32"},
      {mpirun(1) + preset + " --weights-seed 3 : -np 1 " + preset + " --weights-seed 4",
       "tidal: error: ranks differ in the weights' seed: rank 0 has 3, rank 1 has 4"},
      // One rank's collectives on the way to its engine were not the other's: an abort in MPI
      // (MPI_ERR_TRUNCATE).
      {mpirun(1) + preset + " : -np 1 " + model,
       "tidal: error: ranks differ in the model: rank 0 has --preset, rank 1 has --model"},
      {mpirun(1) + model + " : -np 1 " + preset,
       "tidal: error: ranks differ in the model: rank 0 has --model, rank 1 has --preset"},
      {mpirun(1) + tiny + " --policy full : -np 1 " + tiny + " --policy full,quest",
       "tidal: error: ranks differ in --policy: rank 0 has full, rank 1 has full,quest; every "
       "rank must be given the same model and settings\n"},
      {mpirun(1) + tiny + " --policy full,quest : -np 1 " + tiny + " --policy full",
       "tidal: error: ranks differ in --policy: rank 0 has full,quest, rank 1 has full;"},
      {mpirun(1) + tiny + " --policy full : -np 1 " + bench +
           "tiny,llama2-7b --context 100 --policy full",
       "tidal: error: ranks differ in --preset: rank 0 has tiny, rank 1 has tiny,llama2-7b;"},
      // No hang (the engines' settings differ: 'ranks differ in max_context'), but the flag.
      {mpirun(1) + tiny + " --policy full : -np 1 " + bench + "tiny --context 100,1K --policy full",
       "tidal: error: ranks differ in --context: rank 0 has 100, rank 1 has 100,1000;"},
  };
  for (const auto& [command, want] : cases) {
    const Outcome r = run(command, 60);
    EXPECT_NE(r.exit_code, 0) << command << "\n" << r.output;
    EXPECT_LT(r.seconds, 30.0) << command << "\n" << r.output;
    EXPECT_NE(r.output.find(want), std::string::npos) << command << "\n" << r.output;
    EXPECT_EQ(count_of(r.output, "tidal: error:"), 1u) << r.output;
    EXPECT_EQ(ids_line(r.output), "") << "no tokens from a job that should not start\n" << r.output;
    EXPECT_EQ(r.output.find("tidal bench: tiny on "), std::string::npos) << r.output;
  }
}

// One rank on the GPU and one on the CPU (different --device, or `auto` on hosts with and without
// GPUs): the GPU rank would create NCCL, a collective the CPU rank never joins. One error line
// naming --device, and no hang. Needs a GPU (the CPU rank's flag resolves anywhere).
TEST(LaunchParallel, RanksOnDifferentDevicesAreOneClearError) {
  if (!::tidal::cuda_available()) GTEST_SKIP() << "no CUDA device on this machine";
  const std::string preset = std::string(TIDAL_BINARY) +
                             " generate --preset tiny --prompt-ids 1,5,9 --max-new-tokens 4"
                             " --temperature 0 --print-ids --tp 2 --dtype f32 --device ";
  const Outcome r = run(mpirun(1) + preset + "cuda : -np 1 " + preset + "cpu");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("tidal: error: ranks differ in --device: rank 0 runs on cuda, rank 1 "
                          "on cpu"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(count_of(r.output, "tidal: error:"), 1u) << r.output;
  EXPECT_EQ(ids_line(r.output), "") << r.output;
}

// generate runs one request: its errors read the same under --tp as on one process. The policy
// (a Quest budget below one page) and the request's limits (a correction interval past the
// context) are the engine's checks, which named "request 0" under --tp and with --preset, while
// one process with --model, which checks the policy before loading, did not.
TEST(LaunchParallel, ARequestsErrorReadsAsOnOneProcess) {
  const std::string dir = testing::write_gqa128_model(0);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {" --attention quest --budget 8",
       "tidal: error: quest --budget 8 is below one page of 16 tokens\n"},
      {" --attention tidal --budget 8 --correction-interval 100 --max-context 64",
       "tidal: error: --correction-interval 100 never runs a pass in a context of 64 tokens"},
  };
  for (const std::string& source : {std::string("--preset tiny"), "--model " + dir}) {
    for (const auto& [flags, want] : cases) {
      const std::string args = std::string(TIDAL_BINARY) + " generate " + source +
                               " --device cpu --prompt-ids 1,5,9 --max-new-tokens 4 "
                               "--temperature 0 --print-ids" +
                               flags;
      SCOPED_TRACE(source + flags);
      const Outcome one = run(args);
      EXPECT_EQ(one.exit_code, 1) << one.output;
      EXPECT_NE(one.output.find(want), std::string::npos) << one.output;
      const Outcome tp = run(mpirun(2) + args + " --tp 2");
      EXPECT_NE(tp.exit_code, 0) << tp.output;
      EXPECT_NE(tp.output.find(want), std::string::npos) << tp.output;
      EXPECT_EQ(count_of(tp.output, "tidal: error:"), 1u) << tp.output;
    }
  }
}

// The GQA head_dim 128 model with layer 3's down projection stored as I32: with --pp 2 only rank
// 1 (the second stage, layers 2-3) reads it. (A renamed tensor would not do: every rank refuses
// a checkpoint tensor the config has no place for.)
TEST(LaunchParallel, ALoadFailureOnOneRankEndsTheJobNamingTheRank) {
  const std::string dir = testing::write_gqa128_model(0);
  std::string bytes = testing::read_file(dir + "/model.safetensors");
  const std::string name = "model.layers.3.mlp.down_proj.weight";
  const size_t at = bytes.find(name + "\":{\"dtype\":\"F32\"");
  ASSERT_NE(at, std::string::npos);
  bytes[at + name.size() + 12] = 'I';  // F32 -> I32: the same bytes, not a weight dtype
  testing::write_file(dir + "/model.safetensors", bytes);
  const Outcome r = run(mpirun(2) + TIDAL_BINARY + " generate --model " + dir +
                        " --prompt-ids 1,2,3 --max-new-tokens 4 --print-ids --pp 2");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_LT(r.seconds, 30.0);
  EXPECT_NE(r.output.find("tidal: error: rank 1: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(name), std::string::npos) << r.output;
  EXPECT_EQ(count_of(r.output, "tidal: error:"), 1u) << r.output;
}

// Rank 0 reports a failure every rank meets alike, and may print last: after MPI_Finalize, or
// (a bad command line, before MPI starts) if it starts last. mpirun kills every rank once one
// exits non-zero, so the others exiting 1 first ended the job without the line on a loaded
// machine. Forced here: slow_finalize holds rank 0 for two seconds after MPI_Finalize, and a
// shell starts rank 0 two seconds late. The job still exits 1.
TEST(LaunchParallel, RankZerosLineComesOutWhenItPrintsLast) {
  // In a sanitizer build the shim precedes the ASan runtime in the library list: allowed here.
  const char* asan = std::getenv("ASAN_OPTIONS");
  const std::string finalize_late =
      std::string(" -x LD_PRELOAD=") + TIDAL_SLOW_FINALIZE +
      " -x ASAN_OPTIONS=" + (asan != nullptr && *asan != '\0' ? std::string(asan) + ":" : "") +
      "verify_asan_link_order=0 " + TIDAL_BINARY;
  const std::string start_late =
      " bash -c 'if [ \"$OMPI_COMM_WORLD_RANK\" = 0 ]; then sleep 2; fi; exec \"$0\" \"$@\"' " +
      std::string(TIDAL_BINARY);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {finalize_late + " generate --preset tiny --device cpu --prompt-ids 1 --print-ids --tp 4",
       "tidal: error: --tp 4 x --pp 1 needs 4 ranks; mpirun started 2"},
      {finalize_late + " generate --tp 2 --device cpu --weights-seed 3 --prompt-ids 1 --print-ids",
       "tidal: error: --weights-seed has no effect without --preset"},
      {start_late + " generate --tp 2 --no-such-flag",
       "tidal: error: The following argument was not expected: --no-such-flag"},
      {start_late + " info --preset tiny --device cpu",
       "tidal: error: mpirun started 2 ranks, but info runs as one process"},
  };
  for (const auto& [args, want] : cases) {
    const Outcome r = run(mpirun(2) + args);
    EXPECT_EQ(r.exit_code, 1) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(want), std::string::npos) << args << "\n" << r.output;
    EXPECT_EQ(count_of(r.output, "tidal: error:"), 1u) << args << "\n" << r.output;
  }
}

// Ranks given different command lines, only rank 1's bad: rank 0 waits in MPI_Init for rank 1,
// which ends the job by exiting 1 rather than leave it waiting. Rank 1 alone knows why, and says
// so, naming itself (it said nothing: the user saw only mpirun's banner): a flag CLI11 refuses,
// or a command without --tp/--pp (check_launcher).
TEST(LaunchParallel, ABadCommandLineOnAnotherRankEndsTheJobNamingTheRank) {
  const std::string good = std::string(TIDAL_BINARY) +
                           " generate --preset tiny --device cpu --prompt-ids 1,5,9"
                           " --max-new-tokens 4 --print-ids";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {good + " --tp 2 --no-such-flag",
       "tidal: error: rank 1: The following argument was not expected: --no-such-flag"},
      {good, "tidal: error: rank 1: mpirun started 2 ranks, but generate was given no --tp or "
             "--pp"},
  };
  for (const auto& [bad, want] : cases) {
    SCOPED_TRACE(bad);
    const Outcome r = run(mpirun(1) + good + " --tp 2 : -np 1 " + bad, 60);
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_LT(r.seconds, 30.0) << r.output;
    EXPECT_NE(r.output.find(want), std::string::npos) << r.output;
    EXPECT_EQ(count_of(r.output, "tidal: error:"), 1u) << r.output;
    EXPECT_EQ(ids_line(r.output), "") << r.output;
  }
}

// The same, under a launcher that does not say whether its ranks were given one command line
// (MPICH's and Intel MPI's Hydra: PMI_SIZE/PMI_RANK; OpenMPI without OMPI_NUM_APP_CTX), set here
// by hand on one process. Rank 1's line may be the only bad one, so it says why, naming itself,
// as under OpenMPI's several programs; it exited 1 without a word. Rank 0 prints the line plain,
// and a rank other than 0 where OpenMPI says it started one program leaves it to rank 0.
TEST(LaunchParallel, ABadCommandLineUnderAnyLauncherNamesTheRank) {
  const std::string clean =
      "env -u OMPI_COMM_WORLD_SIZE -u OMPI_COMM_WORLD_RANK -u OMPI_NUM_APP_CTX -u PMI_SIZE"
      " -u PMI_RANK ";
  const std::string tidal = std::string(TIDAL_BINARY);
  const std::string unknown = " generate --tp 2 --no-such-flag";
  const std::string malformed = " generate --tp 2 --max-new-tokens x";
  const std::string alone = " generate --preset tiny --device cpu --prompt-ids 1 --print-ids";
  struct Case {
    std::string env, args;
    int exit_code;
    std::string want;  // empty: no line
  };
  const std::vector<Case> cases = {
      {"PMI_SIZE=2 PMI_RANK=1", unknown, 1,
       "tidal: error: rank 1: The following argument was not expected: --no-such-flag"},
      {"PMI_SIZE=2 PMI_RANK=1", malformed, 1,
       "tidal: error: rank 1: Could not convert: --max-new-tokens = x"},
      {"PMI_SIZE=2 PMI_RANK=1", " no-such-command --tp 2", 1,
       "tidal: error: rank 1: unknown subcommand 'no-such-command'"},
      {"PMI_SIZE=2 PMI_RANK=1", alone, 1,
       "tidal: error: rank 1: mpirun started 2 ranks, but generate was given no --tp or --pp"},
      {"PMI_SIZE=3 PMI_RANK=2", unknown, 1,
       "tidal: error: rank 2: The following argument was not expected: --no-such-flag"},
      {"OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=1", unknown, 1,
       "tidal: error: rank 1: The following argument was not expected: --no-such-flag"},
      {"OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=1 OMPI_NUM_APP_CTX=2", unknown, 1,
       "tidal: error: rank 1: The following argument was not expected: --no-such-flag"},
      {"PMI_SIZE=2 PMI_RANK=0", unknown, 1,
       "tidal: error: The following argument was not expected: --no-such-flag"},
      {"OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=1 OMPI_NUM_APP_CTX=1", unknown, 0, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.env + c.args);
    const Outcome r = run(clean + c.env + " " + tidal + c.args, 30);
    EXPECT_EQ(r.exit_code, c.exit_code) << r.output;
    if (c.want.empty()) {
      EXPECT_EQ(r.output, "");
    } else {
      EXPECT_EQ(count_of(r.output, "tidal: error:"), 1u) << r.output;
      EXPECT_EQ(r.output.rfind(c.want, 0), 0u) << r.output;
      EXPECT_EQ(count_of(r.output, "\n"), 1u) << r.output;
    }
  }
}

// A flag check that fails on one rank alone (mpirun's A : B, --temperature -1 on rank 1 only):
// every rank returned from its own check, the failing one into MPI_Finalize and the others into
// the next collective, and the job hung. Now the checks are compared and rank 0 names the rank.
TEST(LaunchParallel, AFlagCheckFailingOnOneRankIsOneClearError) {
  const std::string good = std::string(TIDAL_BINARY) +
                           " generate --preset tiny --device cpu --prompt-ids 1,5,9"
                           " --max-new-tokens 4 --print-ids --tp 2";
  for (const bool on_rank0 : {false, true}) {
    SCOPED_TRACE(on_rank0 ? "rank 0" : "rank 1");
    const std::string bad = good + " --temperature -1";
    const Outcome r =
        run(mpirun(1) + (on_rank0 ? bad : good) + " : -np 1 " + (on_rank0 ? good : bad), 60);
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_LT(r.seconds, 30.0) << r.output;
    const std::string line = std::string("tidal: error: rank ") + (on_rank0 ? "0" : "1") + ": ";
    EXPECT_NE(r.output.find(line), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("temperature"), std::string::npos) << r.output;
    EXPECT_EQ(ids_line(r.output), "") << r.output;
  }
}

// Steps before the engines exist that one rank given other flags (mpirun's A : B) fails alone:
// generate's --preset (a name it does not know), bench's flag checks and bench's --preset. The
// failing rank left for MPI_Finalize without a word and the others for the next collective: the
// job hung. Now the ranks agree on them, and rank 0 prints one line naming the rank.
TEST(LaunchParallel, AStepBeforeTheEnginesFailingOnOneRankIsOneClearError) {
  const std::string generate = std::string(TIDAL_BINARY) +
                               " generate --device cpu --prompt-ids 1,5,9 --max-new-tokens 4"
                               " --print-ids --tp 2";
  const std::string bench =
      std::string(TIDAL_BINARY) + " bench --device cpu --batch 1 --budget 32 --warmup 0 --tp 2";
  const std::string bench_tiny = bench + " --preset tiny --context 100";
  struct Case {
    std::string good, bad, want;
  };
  const std::vector<Case> cases = {
      {generate + " --preset tiny", generate + " --preset nosuch",
       "--preset: unknown model preset 'nosuch'"},
      {bench_tiny + " --steps 1", bench + " --preset tiny --context abc --steps 1",
       "--context: 'abc' is not a count"},
      {bench_tiny + " --steps 1", bench_tiny + " --steps 0", "--steps must be in [1, 1000000]"},
      {bench_tiny + " --steps 1", bench + " --preset nosuch --context 100 --steps 1",
       "unknown model preset 'nosuch'"},
  };
  for (const Case& c : cases) {
    for (const bool on_rank0 : {false, true}) {
      SCOPED_TRACE(c.bad + (on_rank0 ? " on rank 0" : " on rank 1"));
      const Outcome r = run(
          mpirun(1) + (on_rank0 ? c.bad : c.good) + " : -np 1 " + (on_rank0 ? c.good : c.bad), 60);
      EXPECT_EQ(r.exit_code, 1) << r.output;
      EXPECT_LT(r.seconds, 30.0) << r.output;
      const std::string line =
          std::string("tidal: error: rank ") + (on_rank0 ? "0" : "1") + ": " + c.want;
      EXPECT_NE(r.output.find(line), std::string::npos) << r.output;
      EXPECT_EQ(count_of(r.output, "tidal: error:"), 1u) << r.output;
      EXPECT_EQ(ids_line(r.output), "") << r.output;
    }
  }
}

// bench under --tp: a row that fails on rank 0 (a tidal budget below 2, which the engine refuses
// when the row adds its sequence) with another engine to come (the Quest rows', after the
// others'). Rank 0's engine ended and let the others leave serve(); they went on to make the next
// engine, a collective rank 0 never joined, and the job hung without rank 0's line. Now the ranks
// agree on each engine's rows: every rank stops, and rank 0 prints its line once.
TEST(LaunchParallel, ABenchRowFailingOnRankZeroEndsTheJobWithItsLine) {
  const Outcome r = run(mpirun(2) + TIDAL_BINARY +
                            " bench --device cpu --preset tiny --context 100 --batch 1"
                            " --steps 1 --warmup 0 --policy tidal,quest --budget 1 --tp 2",
                        60);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_LT(r.seconds, 30.0) << r.output;
  EXPECT_NE(r.output.find("tidal: error: tiny at 100: tidal budget must be >= 2 (the current "
                          "token and at least one selected), got 1\n"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(count_of(r.output, "tidal: error:"), 1u) << r.output;
}

// A rank killed (SIGKILL) or aborting on a fatal error mid-generation: mpirun ends every rank,
// exits non-zero and names the rank, within seconds; nothing hangs in a collective.
TEST(LaunchParallel, AKilledOrAbortingRankEndsTheJobWithinSeconds) {
  const std::string dir = testing::write_gqa128_model(0);
  for (const char* mode : {"kill", "abort"}) {
    for (int victim : {1, 0}) {
      const Outcome r = run(mpirun(2) + TIDAL_FAULT_HELPER + " " + dir + " " + mode + " " +
                            std::to_string(victim) + " 40");
      SCOPED_TRACE(std::string(mode) + " rank " + std::to_string(victim));
      EXPECT_NE(r.exit_code, 0) << r.output;
      EXPECT_LT(r.seconds, 30.0) << r.output;
      EXPECT_EQ(r.output.find("generation ended: ok"), std::string::npos) << r.output;
      const std::string rank = "rank " + std::to_string(victim);
      EXPECT_NE(r.output.find(rank), std::string::npos) << r.output;
      if (std::string(mode) == "abort") {
        EXPECT_NE(r.output.find("[" + rank + "] tidal: fatal:"), std::string::npos) << r.output;
      }
    }
  }
}

}  // namespace
}  // namespace tidal
