// SPDX-License-Identifier: Apache-2.0
// The accuracy commands' pieces that need no model run: tidal_policy.json (read, write, the rules
// by which it becomes a model's default), the sweep's policy variants and their flags, and the
// calibration choice.
#include <sys/resource.h>

#include <cmath>
#include <csignal>
#include <filesystem>

#include "launch/accuracy.h"
#include "launch/policy_file.h"
#include "tests/testing/model_config.h"
#include "tests/testing/testing.h"

namespace tidal::launch {
namespace {

model::ModelConfig ten_layers() {
  testing::TinyLlama t;
  t.layers = 10;
  return testing::tiny_llama(t);
}

TEST(PolicyFile, WriteThenRead) {
  const std::string path = testing::temp_dir("policy") + "/tidal_policy.json";
  ASSERT_TRUE(write_policy_file(path, 5, {7}, R"({"summary": "K=64: needle 10/10"})").ok());
  ModelPolicy p;
  ASSERT_TRUE(read_policy_file(path, &p).ok());
  EXPECT_TRUE(p.found());
  EXPECT_EQ(p.sparse_start, 5);
  EXPECT_EQ(p.reselect_layers, std::vector<int64_t>{7});
  EXPECT_EQ(p.summary, "K=64: needle 10/10");
  EXPECT_EQ(layers_label(5, {7}), "5:7");
  EXPECT_EQ(layers_label(3, {5, 8}), "3:5+8");
  EXPECT_EQ(layers_label(5, {}), "5:-");
}

// write_file_atomic (the policy file, every --json) writes `path` through `path`.tmp and a
// rename; a rename that failed (`path` an existing folder) returned its error but left the
// temporary file beside `path`, as did a write that failed (a full disk).
TEST(PolicyFile, AFailedWriteLeavesNoTemporaryFile) {
  const std::string dir = testing::temp_dir("atomic");
  const std::string folder = dir + "/folder";
  ASSERT_TRUE(std::filesystem::create_directory(folder));
  testing::write_file(folder + "/inside.txt", "kept");
  Status st = write_file_atomic(folder, "{}\n");
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_NE(st.message().find(folder + ": cannot write ("), std::string::npos) << st.message();
  EXPECT_FALSE(std::filesystem::exists(folder + ".tmp"));
  EXPECT_EQ(testing::read_file(folder + "/inside.txt"), "kept");
  st = write_policy_file(folder, 5, {7}, "");
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_FALSE(std::filesystem::exists(folder + ".tmp"));

  // A write that fails: a file size limit of 16 bytes (SIGXFSZ ignored, so write() fails EFBIG).
  const std::string big = dir + "/big.json";
  rlimit before{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &before), 0);
  rlimit small = before;
  small.rlim_cur = 16;
  void (*handler)(int) = std::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  st = write_file_atomic(big, std::string(1 << 16, 'x'));
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &before), 0);
  std::signal(SIGXFSZ, handler);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_NE(st.message().find(big + ".tmp: write failed"), std::string::npos) << st.message();
  EXPECT_FALSE(std::filesystem::exists(big + ".tmp"));
  EXPECT_FALSE(std::filesystem::exists(big));
}

TEST(PolicyFile, AbsentIsNotAnError) {
  ModelPolicy p;
  ASSERT_TRUE(load_model_policy(testing::temp_dir("policy"), &p).ok());
  EXPECT_FALSE(p.found());
}

TEST(PolicyFile, MalformedFilesNameThemselves) {
  const std::string dir = testing::temp_dir("policy");
  for (const std::string& bad :
       {std::string("not json"), std::string("[1]"), std::string(R"({"reselect_layers": []})"),
        std::string(R"({"sparse_start": -1, "reselect_layers": []})"),
        std::string(R"({"sparse_start": 2, "reselect_layers": "5"})"),
        std::string(R"({"sparse_start": 2, "reselect_layers": [1.5]})")}) {
    testing::write_file(dir + "/tidal_policy.json", bad);
    ModelPolicy p;
    const Status st = load_model_policy(dir, &p);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(st.message().find("tidal_policy.json"), std::string::npos) << st.message();
  }
}

TEST(PolicyFile, BecomesTheDefaultOnlyForTidalWithoutLayerFlags) {
  ModelPolicy file;
  file.path = "/m/tidal_policy.json";
  file.sparse_start = 5;
  file.reselect_layers = {};
  model::AttentionPolicy tidal;
  tidal.kind = model::AttentionKind::kTidal;
  model::AttentionPolicy p = tidal;
  ASSERT_TRUE(apply_model_policy(file, /*layers_given=*/false, ten_layers(), &p).ok());
  EXPECT_EQ(p.tidal.sparse_start, 5);
  EXPECT_EQ(model::reselect_layers(p, ten_layers()), std::vector<int64_t>{});
  p = tidal;  // a layer flag given: the flags (and the depth rule) win
  ASSERT_TRUE(apply_model_policy(file, /*layers_given=*/true, ten_layers(), &p).ok());
  EXPECT_EQ(p.tidal.sparse_start, 2);
  EXPECT_EQ(model::reselect_layers(p, ten_layers()), std::vector<int64_t>{4});
  p = model::AttentionPolicy();  // full: nothing to apply
  ASSERT_TRUE(apply_model_policy(file, false, ten_layers(), &p).ok());
  EXPECT_EQ(p.kind, model::AttentionKind::kFull);
  p = tidal;  // no file: the depth-scaled rule stays
  ASSERT_TRUE(apply_model_policy(ModelPolicy(), false, ten_layers(), &p).ok());
  EXPECT_EQ(p.tidal.sparse_start, 2);
  file.sparse_start = 12;  // calibrated for a deeper model
  p = tidal;
  const Status st = apply_model_policy(file, false, ten_layers(), &p);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("/m/tidal_policy.json"), std::string::npos) << st.message();
}

TEST(AccuracyFlags, Lists) {
  std::vector<int64_t> v;
  ASSERT_TRUE(parse_length_list("1K,4k 16384", "--lengths", &v).ok());
  EXPECT_EQ(v, (std::vector<int64_t>{1024, 4096, 16384}));
  v.clear();
  ASSERT_TRUE(parse_int_list("0,10,3-5", "--depths", &v).ok());
  EXPECT_EQ(v, (std::vector<int64_t>{0, 10, 3, 4, 5}));
  for (const char* bad : {"", "0", "x", "-4", "1.5K"}) {
    v.clear();
    EXPECT_FALSE(parse_length_list(bad, "--lengths", &v).ok()) << bad;
  }
  for (const char* bad : {"5-3", "a", "1-"}) {
    v.clear();
    const Status st = parse_int_list(bad, "--depths", &v);
    EXPECT_FALSE(st.ok()) << bad;
    EXPECT_NE(st.message().find("--depths"), std::string::npos);
  }
}

// A value listed twice would run (and print) its rows twice: refused, naming both spellings.
TEST(AccuracyFlags, ListsRefuseAValueListedTwice) {
  const struct {
    bool lengths;  // else parse_int_list
    const char* text;
    const char* error;
  } cases[] = {
      {true, "128,128", "--lengths: 128 is listed twice"},
      {true, "1K,4K,1024", "--lengths: 1024 is listed twice ('1K' and '1024')"},
      {false, "50,50", "--depths: 50 is listed twice"},
      {false, "0-50,50", "--depths: 50 is listed twice ('0-50' and '50')"},
      {false, "1-3,2-4", "--depths: 2 is listed twice ('1-3' and '2-4')"},
  };
  for (const auto& tc : cases) {
    std::vector<int64_t> v;
    const Status st = tc.lengths ? parse_length_list(tc.text, "--lengths", &v)
                                 : parse_int_list(tc.text, "--depths", &v);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << tc.text;
    EXPECT_EQ(st.message(), tc.error) << tc.text;
  }
}

TEST(AccuracyFlags, VariantsCoverEveryCombination) {
  VariantFlags f;
  f.policies = {"full", "tidal", "quest"};
  f.budgets = "32,64";
  f.granularities = {"per-query-head", "shared"};
  f.layers = {"default", "5:-", "3:5+7"};
  f.corrections = "0,64";
  std::vector<Variant> v;
  const Status st = build_variants(f, ten_layers(), testing::temp_dir("v"), 16, &v);
  ASSERT_TRUE(st.ok()) << st.to_string();
  // full once; per budget and correction: quest once, tidal 2 granularities x 3 layer sets.
  EXPECT_EQ(v.size(), 1u + 2 * 2 * (1 + 2 * 3));
  EXPECT_EQ(v[0].label, "full");
  EXPECT_EQ(v[1].label, "tidal per-query-head 2:4 default K=32");
  EXPECT_EQ(v[2].label, "tidal per-query-head 5:- K=32");
  EXPECT_EQ(v[3].label, "tidal per-query-head 3:5+7 K=32");
  EXPECT_EQ(*v[3].attention.tidal.reselect_layers, (std::vector<int64_t>{5, 7}));
  EXPECT_EQ(v[7].label, "tidal per-query-head 2:4 default K=32 corr=64");
  EXPECT_EQ(v[7].attention.correction_interval, 64);
  EXPECT_EQ(v.back().label, "quest K=64 corr=64");
  EXPECT_EQ(variant_file_name("niah", v[2]), "niah_tidal_per-query-head_5-none_K32.png");
  EXPECT_EQ(variant_file_name("niah", v[3]), "niah_tidal_per-query-head_3-5p7_K32.png");
}

TEST(AccuracyFlags, ModelLayersComeFromTheFile) {
  const std::string dir = testing::temp_dir("v");
  VariantFlags f;
  f.policies = {"tidal"};
  f.layers = {"model"};
  std::vector<Variant> v;
  ASSERT_TRUE(build_variants(f, ten_layers(), dir, 16, &v).ok());  // no file: the depth rule
  EXPECT_EQ(v[0].layers, "2:4 default");
  f.layers = {"calibrated"};
  v.clear();
  EXPECT_EQ(build_variants(f, ten_layers(), dir, 16, &v).code(), StatusCode::kNotFound);
  ASSERT_TRUE(write_policy_file(dir + "/tidal_policy.json", 5, {}, "").ok());
  f.layers = {"model", "calibrated", "default"};  // the first two are one
  v.clear();
  ASSERT_TRUE(build_variants(f, ten_layers(), dir, 16, &v).ok());
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].layers, "5:- calibrated");
  EXPECT_EQ(v[1].layers, "2:4 default");
}

TEST(AccuracyFlags, BadVariantsAreRefused) {
  std::vector<Variant> v;
  VariantFlags f;
  f.policies = {"tidal"};
  f.layers = {"12:-"};  // outside 10 layers
  EXPECT_EQ(build_variants(f, ten_layers(), "", 16, &v).code(), StatusCode::kInvalidArgument);
  f.layers = {"3:2"};  // re-selection not above the first
  v.clear();
  EXPECT_EQ(build_variants(f, ten_layers(), "", 16, &v).code(), StatusCode::kInvalidArgument);
  f.layers = {"3:12"};  // --layers parses the spec; the model's depth is checked with the policy
  v.clear();
  const Status outside = build_variants(f, ten_layers(), "", 16, &v);
  EXPECT_NE(outside.message().find("3:12 K=64: reselect_layers: layer 12 is outside the 10 layers"),
            std::string::npos)
      << outside.message();
  f.layers = {"x"};
  v.clear();
  EXPECT_EQ(build_variants(f, ten_layers(), "", 16, &v).code(), StatusCode::kInvalidArgument);
  f.layers = {"5:-"};
  f.policies = {"quest"};
  f.budgets = "8";  // below one page
  v.clear();
  EXPECT_EQ(build_variants(f, ten_layers(), "", 16, &v).code(), StatusCode::kInvalidArgument);
}

// A variant flag given on the command line that no listed policy reads would do nothing.
TEST(AccuracyFlags, FlagsNoListedPolicyReadsAreRefused) {
  const struct {
    std::vector<std::string> policies;
    const char* flag;
    const char* error;  // empty: accepted
  } cases[] = {
      {{"full"}, "--budget", "--budget has no effect with --policy full (it applies to tidal and"},
      {{"full"}, "--granularity", "--granularity has no effect with --policy full (it applies"},
      {{"full"}, "--layers", "--layers has no effect with --policy full"},
      {{"full"}, "--correction-interval", "--correction-interval has no effect"},
      {{"full", "quest"}, "--policy-file", "--policy-file has no effect with --policy full,quest"},
      {{"full", "quest"}, "--granularity", "--granularity has no effect with --policy full,quest"},
      {{"full", "quest"}, "--budget", ""},
      {{"full", "tidal"}, "--layers", ""},
  };
  for (const auto& tc : cases) {
    VariantFlags f;
    f.policies = tc.policies;
    f.flags_given = {tc.flag};
    std::vector<Variant> v;
    const Status st = build_variants(f, ten_layers(), testing::temp_dir("v"), 16, &v);
    if (std::string(tc.error).empty()) {
      EXPECT_TRUE(st.ok()) << tc.flag << ": " << st.message();
    } else {
      EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << tc.flag;
      EXPECT_NE(st.message().find(tc.error), std::string::npos) << st.message();
    }
  }
}

CandidateScore score(int64_t start, int64_t hits, double ppl, double cost) {
  CandidateScore c;
  c.sparse_start = start;
  c.hits = hits;
  c.ppl = ppl;
  c.cost = cost;
  return c;
}

TEST(Calibrate, ChoosesTheCheapestCandidateThatMatchesFull) {
  const std::vector<CandidateScore> s = {score(2, 1, 40.0, 0.3),    // cheap, misses needles
                                         score(5, 10, 41.0, 0.6),   // matches
                                         score(6, 10, 40.2, 0.7),   // matches, dearer
                                         score(3, 10, 60.0, 0.4)};  // perplexity too high
  bool matched = false;
  EXPECT_EQ(choose_candidate(s, 10, 40.0, 0, 0.05, &matched), 1u);
  EXPECT_TRUE(matched);
  // A tolerance of one miss admits nothing new here; a 60% perplexity tolerance admits the third.
  EXPECT_EQ(choose_candidate(s, 10, 40.0, 0, 0.6, &matched), 3u);
  // Nothing matches full: the most accurate (hits, then perplexity) is taken.
  EXPECT_EQ(choose_candidate(s, 11, 40.0, 0, 0.05, &matched), 2u);
  EXPECT_FALSE(matched);
  // Without perplexity (NaN) only the needle counts.
  std::vector<CandidateScore> n = s;
  for (CandidateScore& c : n) c.ppl = NAN;
  EXPECT_EQ(choose_candidate(n, 10, NAN, 0, 0.05, &matched), 3u);
  EXPECT_TRUE(matches_full(n[0], 2, NAN, 1, 0.0));
  EXPECT_FALSE(matches_full(n[0], 3, NAN, 1, 0.0));
}

// The largest --miss-tolerance admits every needle count (hits + tolerance once overflowed).
TEST(Calibrate, AHugeMissToleranceAdmitsAnyHits) {
  EXPECT_TRUE(matches_full(score(2, 0, NAN, 0.3), 10, NAN, INT64_MAX, 0.0));
  EXPECT_TRUE(matches_full(score(2, 7, NAN, 0.3), 10, NAN, INT64_MAX, 0.0));
}

// The stream ppl and calibrate score: BOS, then the tokens asked for (calibrate took one fewer).
TEST(Perplexity, TheStreamIsBosAndTheTokensScored) {
  const std::vector<int32_t> text = {10, 11, 12, 13, 14};
  EXPECT_EQ(perplexity_stream(1, text, 0, 3), (std::vector<int32_t>{1, 10, 11, 12}));
  EXPECT_EQ(perplexity_stream(1, text, 2, 3), (std::vector<int32_t>{1, 12, 13, 14}));
  EXPECT_NE(token_checksum(perplexity_stream(1, text, 0, 3)),
            token_checksum(perplexity_stream(1, text, 0, 2)));
}

// calibrate's summary (its last line, the policy file's calibration.summary) was made in a
// 512-character buffer: a long --lengths list cut it off, with the choice's needle count,
// perplexity and cost after the list.
TEST(Calibrate, TheSummaryHoldsALongLengthList) {
  CalibrateOptions o;
  o.budget = 64;
  o.granularity = "per-query-head";
  o.ppl_tokens = 1024;
  o.lengths.clear();
  for (int64_t length = 1000; length < 1200; ++length) {
    o.lengths += (o.lengths.empty() ? "" : ",") + std::to_string(length);
  }
  ASSERT_GT(o.lengths.size(), 512u);
  const std::string tail =
      " tokens) + 1024-token ppl: needle 190/200 (full 195, default 2:4 180), ppl 41.250 (full "
      "40.000), KV rows 0.500 of full";
  EXPECT_EQ(calibration_summary(o, 200, score(5, 190, 41.25, 0.5), score(0, 195, 40.0, 1.0), "2:4",
                                score(2, 180, 45.0, 0.6), /*matched=*/true),
            "calibrated at K=64 (per-query-head) on 200 needle cases (" + o.lengths + tail);
  EXPECT_EQ(calibration_summary(o, 200, score(5, 190, 41.25, 0.5), score(0, 195, 40.0, 1.0), "2:4",
                                score(2, 180, 45.0, 0.6), /*matched=*/false),
            "calibrated at K=64 (per-query-head) on 200 needle cases (" + o.lengths + tail +
                "; no candidate matched full: the most accurate was taken");
}

}  // namespace
}  // namespace tidal::launch
