// SPDX-License-Identifier: Apache-2.0
// The tidal command end to end, as a user runs it: golden generation on stories260K,
// tokenize / info output, and one clear error line (exit code 1, no crash) for each bad input.
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
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

CliRun tidal(const std::string& args) {
  const std::string dir = testing::temp_dir("cli");
  const std::string cmd =
      std::string(TIDAL_BINARY) + " " + args + " > " + dir + "/out 2> " + dir + "/err";
  const int status = std::system(cmd.c_str());
  CliRun r;
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  r.out = testing::read_file(dir + "/out");
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

}  // namespace
}  // namespace tidal
