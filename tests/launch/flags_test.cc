// SPDX-License-Identifier: Apache-2.0
// The command's flags as a class: every default --help shows is the value a run uses; library
// errors about a flag's value name the flag; every seed flag takes the whole u64 range and nothing
// else; attention flags the chosen policy ignores are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "launch/accuracy.h"
#include "launch/cli.h"
#include "launch/flag_names.h"

namespace tidal::launch {
namespace {

// Every subcommand, as main.cc registers them.
struct Commands {
  CLI::App app{"tidal"};
  GenerateOptions gen;
  InfoOptions info;
  TokenizeOptions tok;
  BenchOptions bench;
  NiahOptions niah;
  PplOptions ppl;
  CalibrateOptions calibrate;
  ServeOptions serve;
  ClientOptions client;
  Commands() {
    add_generate_command(app, &gen);
    add_info_command(app, &info);
    add_tokenize_command(app, &tok);
    add_bench_command(app, &bench);
    add_niah_command(app, &niah);
    add_ppl_command(app, &ppl);
    add_calibrate_command(app, &calibrate);
    add_serve_command(app, &serve);
    add_client_command(app, &client);
  }
};

// --help shows each option's default as captured when the flag was defined; capturing again now,
// with nothing parsed, reads the value a run would use. (--max-batch once showed 8 and ran 1.)
TEST(Flags, HelpDefaultsAreTheValuesARunUses) {
  Commands c;
  int checked = 0;
  for (CLI::App* cmd : c.app.get_subcommands({})) {
    for (CLI::Option* opt : cmd->get_options()) {
      const std::string shown = opt->get_default_str();
      if (shown.empty()) continue;
      opt->capture_default_str();
      EXPECT_EQ(opt->get_default_str(), shown) << cmd->get_name() << " " << opt->get_name();
      ++checked;
    }
  }
  EXPECT_GT(checked, 100) << "every subcommand's options";
  EXPECT_EQ(c.gen.engine.max_batch, 1);
  EXPECT_EQ(c.serve.engine.max_batch, 32);
}

Status parse(Commands& c, std::vector<std::string> args) {
  std::vector<const char*> argv = {"tidal"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  try {
    c.app.parse(int(argv.size()), const_cast<char**>(argv.data()));
  } catch (const CLI::ParseError& e) {
    return invalid_argument(e.what());
  }
  return ok_status();
}

// Every seed flag of every subcommand, and the field each one sets (ppl has none).
TEST(Flags, SeedTakesTheWholeU64RangeAndNothingElse) {
  const struct {
    const char* command;
    const char* flag;
    std::function<uint64_t(const Commands&)> value;
  } seeds[] = {
      {"generate", "--seed", [](const Commands& c) { return c.gen.sampling.seed; }},
      {"generate", "--weights-seed", [](const Commands& c) { return c.gen.weights_seed; }},
      {"bench", "--seed", [](const Commands& c) { return c.bench.seed; }},
      {"niah", "--seed", [](const Commands& c) { return c.niah.common.seed; }},
      {"calibrate", "--seed", [](const Commands& c) { return c.calibrate.common.seed; }},
      {"serve", "--seed", [](const Commands& c) { return c.serve.seed; }},
      {"client", "--seed", [](const Commands& c) { return c.client.request.sampling.seed; }},
  };
  for (const auto& s : seeds) {
    {
      Commands c;
      ASSERT_TRUE(parse(c, {s.command, s.flag, "18446744073709551615"}).ok()) << s.command;
      EXPECT_EQ(s.value(c), UINT64_MAX) << s.command << " " << s.flag;
    }
    for (const char* bad : {"-1", "18446744073709551616", "1e3", "0x10", " 5", "+5", ""}) {
      Commands c;
      const Status st = parse(c, {s.command, s.flag, bad});
      EXPECT_FALSE(st.ok()) << s.command << " " << s.flag << " " << bad;
      EXPECT_NE(st.message().find(s.flag), std::string::npos) << st.message();
    }
  }
}

// `generate ARGS`' attention policy: built, or refused with a message holding `error`.
struct PolicyCase {
  std::vector<std::string> args;
  const char* error;  // empty: accepted
};

void expect_policy(const PolicyCase& tc) {
  Commands c;
  std::vector<std::string> args = {"generate"};
  args.insert(args.end(), tc.args.begin(), tc.args.end());
  ASSERT_TRUE(parse(c, args).ok());
  model::AttentionPolicy p;
  const Status st = build_policy(c.gen, &p);
  if (std::string(tc.error).empty()) {
    EXPECT_TRUE(st.ok()) << st.message();
  } else {
    EXPECT_NE(st.message().find(tc.error), std::string::npos) << st.message();
  }
}

TEST(Flags, AttentionFlagsWithoutEffectAreRefused) {
  const PolicyCase cases[] = {
      {{"--granularity", "shared"}, "--granularity has no effect with --attention full"},
      {{"--correction-interval", "4"}, "--correction-interval has no effect with --attention full"},
      {{"--budget", "64"}, "--budget has no effect with --attention full"},
      {{"--attention", "quest", "--sparse-start", "3"}, "--sparse-start has no effect"},
      {{"--attention", "quest", "--reselect-layers", "4"}, "--reselect-layers has no effect"},
      {{"--attention", "quest", "--budget", "64", "--correction-interval", "8"}, ""},
      {{"--attention", "tidal", "--granularity", "shared", "--sparse-start", "1"}, ""},
  };
  for (const PolicyCase& tc : cases) expect_policy(tc);
}

// Values no model takes are refused by the flag's name before a model's tidal_policy.json is
// applied (whose own check names the file).
TEST(Flags, PolicyFlagValuesAreCheckedByName) {
  const PolicyCase cases[] = {
      {{"--attention", "tidal", "--budget", "1"}, "tidal --budget must be >= 2"},
      {{"--attention", "tidal", "--correction-interval", "-3"},
       "--correction-interval must be >= 0 (0: off), got -3"},
      {{"--attention", "quest", "--correction-interval", "-1"}, "--correction-interval must be"},
      {{"--attention", "tidal", "--budget", "2", "--correction-interval", "0"}, ""},
  };
  for (const PolicyCase& tc : cases) expect_policy(tc);
}

// generate's sampling and stop flags are checked by check_generate_flags, before any model
// loads: the --tp/--pp path checked them only after loading, and named the field, not the flag.
TEST(Flags, GenerateSamplingFlagsAreCheckedBeforeAModelLoads) {
  const PolicyCase cases[] = {
      {{"--temperature", "nan"}, "--temperature must be a finite number >= 0 (got nan)"},
      {{"--top-p", "0"}, "--top-p must be in (0, 1]"},
      {{"--top-k", "-1"}, "--top-k must be >= 0"},
      {{"--min-p", "inf"}, "--min-p must be in [0, 1]"},
      {{"--max-new-tokens", "0"}, "--max-new-tokens must be >= 1"},
      {{"--stop", ""}, "--stop must not hold an empty string"},
      {{"--temperature", "0", "--top-k", "5", "--stop", "x"}, ""},
  };
  for (const PolicyCase& tc : cases) {
    Commands c;
    std::vector<std::string> args = {"generate"};
    args.insert(args.end(), tc.args.begin(), tc.args.end());
    ASSERT_TRUE(parse(c, args).ok());
    const Status st = check_generate_flags(c.gen);
    if (std::string(tc.error).empty()) {
      EXPECT_TRUE(st.ok()) << st.message();
    } else {
      EXPECT_NE(st.message().find(tc.error), std::string::npos)
          << tc.args[0] << ": " << st.message();
    }
  }
}

// serve --max-budget: the largest sparse budget a request may ask (EngineConfig::max_budget),
// which no serve flag set, so a request above its default of 4096 was refused whatever the
// context. The value reaches the engine's config; one the engine cannot take is refused by
// check_serve_flags (before a model loads) naming the flag and its range.
TEST(Flags, ServeMaxBudgetReachesTheEngineConfig) {
  {
    Commands c;
    ASSERT_TRUE(parse(c, {"serve"}).ok());
    EXPECT_EQ(c.serve.engine.max_budget, engine::EngineConfig().max_budget);
    EXPECT_TRUE(check_serve_flags(c.serve).ok());
  }
  for (const char* ok : {"2", "8192", "268435456"}) {
    Commands c;
    ASSERT_TRUE(parse(c, {"serve", "--max-budget", ok}).ok()) << ok;
    EXPECT_EQ(c.serve.engine.max_budget, std::stoll(ok));
    const Status st = check_serve_flags(c.serve);
    EXPECT_TRUE(st.ok()) << ok << ": " << st.message();
  }
  for (const char* bad : {"1", "0", "-4", "268435457"}) {
    Commands c;
    ASSERT_TRUE(parse(c, {"serve", "--max-budget", bad}).ok()) << bad;
    const Status st = check_serve_flags(c.serve);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(st.message(), std::string("--max-budget must be in [2, 268435456] (the largest "
                                        "sparse budget a request may ask), got ") +
                                bad);
  }
  Commands c;
  EXPECT_FALSE(parse(c, {"serve", "--max-budget", "4K"}).ok());  // not an integer
}

// Seconds flags: finite, in [0, a week]; NaN is not "none".
TEST(Flags, SecondsAreFiniteAndAtMostAWeek) {
  for (double ok : {0.0, 0.5, 30.0, kMaxFlagSeconds}) {
    EXPECT_TRUE(check_seconds(ok, "--timeout").ok()) << ok;
  }
  for (double bad :
       {-1.0, double(INFINITY), -double(INFINITY), std::nan(""), 1e10, 1e13, kMaxFlagSeconds + 1}) {
    const Status st = check_seconds(bad, "--drain-seconds");
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(st.message().rfind("--drain-seconds must be a number of seconds in [0, 604800]", 0),
              0u)
        << st.message();
  }
  EXPECT_EQ(check_seconds(INFINITY, "--timeout").message(),
            "--timeout must be a number of seconds in [0, 604800] (a week), got inf");
  Commands c;
  ASSERT_TRUE(parse(c, {"client", "--timeout", "inf"}).ok());  // parsed; refused by run_client
  EXPECT_TRUE(std::isinf(c.client.timeout));
}

// bench's --context / --batch / --budget lists: K and M scale, and a refusal says what a count is
// (ten digits were "not a positive count", whatever their value).
TEST(Flags, CountListsTakeKAndMAndSayWhatACountIs) {
  std::vector<int64_t> got;
  ASSERT_TRUE(parse_count_list("32K, 1m,7 999999999", "--context", &got).ok());
  EXPECT_EQ(got, (std::vector<int64_t>{32000, 1000000, 7, 999999999}));
  for (const char* bad : {"0", "-1", "1.5K", "K", "2000000000", "12x", "0M"}) {
    std::vector<int64_t> out;
    const Status st = parse_count_list(bad, "--context", &out);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(st.message(), std::string("--context: '") + bad +
                                "' is not a count: 1 to 999999999, with an optional K (x1000) or "
                                "M (x1000000), e.g. 32000 or 32K")
        << bad;
  }
  std::vector<int64_t> none;
  EXPECT_EQ(parse_count_list(" , ", "--batch", &none).message(), "--batch lists no value");
}

// niah and ppl record the variant flags given (build_variants refuses those no listed policy
// reads), and niah whether --min-accuracy was given (a floor outside [0, 100] is refused).
TEST(Flags, AccuracyCommandsRecordTheFlagsGiven) {
  Commands c;
  ASSERT_TRUE(parse(c, {"ppl", "--policy", "full", "--budget", "32", "--layers", "2:-"}).ok());
  EXPECT_EQ(c.ppl.variants.flags_given, (std::vector<std::string>{"--budget", "--layers"}));
  Commands n;
  ASSERT_TRUE(parse(n, {"niah", "--granularity", "shared"}).ok());
  EXPECT_EQ(n.niah.variants.flags_given, std::vector<std::string>{"--granularity"});
  EXPECT_FALSE(n.niah.min_accuracy_given);
  Commands m;
  ASSERT_TRUE(parse(m, {"niah", "--min-accuracy", "-1"}).ok());
  EXPECT_TRUE(m.niah.min_accuracy_given);
}

TEST(FlagNames, FieldNamesBecomeFlags) {
  EXPECT_EQ(name_flags("top_p must be in (0, 1] (got 0)"), "--top-p must be in (0, 1] (got 0)");
  EXPECT_EQ(name_flags("page_size 0 is out of range; max_batch too"),
            "--page-size 0 is out of range; --max-batch too");
  EXPECT_EQ(name_flags("request 0: tidal budget must be >= 2"),
            "request 0: tidal --budget must be >= 2");
  // Words that only contain a field name, and flags already named, stay as they are.
  EXPECT_EQ(name_flags("max_budget 9; --top-p; top_pp; my_page_size"),
            "max_budget 9; --top-p; top_pp; my_page_size");
  EXPECT_EQ(name_flags(invalid_argument("reselect_layers: layer 9")).message(),
            "--reselect-layers: layer 9");
  EXPECT_TRUE(name_flags(ok_status()).ok());
}

}  // namespace
}  // namespace tidal::launch
