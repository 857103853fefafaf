// SPDX-License-Identifier: Apache-2.0
// Needle cases, built with the embedded model's tokenizer over a written haystack: the prompt's
// length and layout (BOS, the needle at its depth on a sentence start, the question last), the
// seeded choice of needles, and retrieval scoring.
#include <memory>
#include <set>

#include "launch/needle.h"
#include "tests/testing/testing.h"

namespace tidal::launch {
namespace {

const std::string kModel = std::string(TIDAL_SOURCE_DIR) + "/model/tidal-tiny-16k";

class NeedleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(model::Tokenizer::load_from_dir(kModel, &tok_).ok());
    // Hard-wrapped paragraphs of short numbered sentences.
    std::string text;
    for (int i = 0; i < 600; ++i) {
      text += "The carriage number " + std::to_string(i) + " went by the old mill.";
      text += i % 5 == 4 ? "\n\n" : (i % 2 ? "\n" : " ");
    }
    path_ = testing::temp_dir("needle") + "/hay.txt";
    testing::write_file(path_, text);
    Haystack h;
    const Status st = load_haystack(path_, *tok_, &h);
    ASSERT_TRUE(st.ok()) << st.to_string();
    hay_tokens_ = int64_t(h.tokens.size());
    ASSERT_TRUE(NeedleMaker::create(*tok_, 4094, std::move(h), &maker_).ok());
  }

  std::string decode(const std::vector<int32_t>& ids, int64_t begin, int64_t end) {
    std::string s;
    EXPECT_TRUE(tok_->decode(std::vector<int32_t>(ids.begin() + begin, ids.begin() + end), true, &s)
                    .ok());
    return s;
  }

  std::unique_ptr<model::Tokenizer> tok_;
  std::unique_ptr<NeedleMaker> maker_;
  std::string path_;
  int64_t hay_tokens_ = 0;
};

TEST(CleanText, JoinsWrappedLinesIntoParagraphs) {
  EXPECT_EQ(clean_text("  One\ntwo.\n\n\nThree\r\n  four.  \n"), "One two.\n\nThree four.");
}

TEST_F(NeedleTest, SentenceStartsAreMarked) {
  const Haystack& h = maker_->haystack();
  int64_t starts = 0;
  for (size_t p = 1; p < h.tokens.size(); ++p) {
    if (!h.boundary[p]) continue;
    ++starts;
    const std::string before = decode(h.tokens, int64_t(p) - 1, int64_t(p));
    EXPECT_EQ(before.back(), '.');
  }
  EXPECT_GT(starts, 400);  // most of the 600 sentences (paragraph ends merge with the newlines)
}

TEST_F(NeedleTest, PromptLayout) {
  for (int64_t depth : {0, 10, 50, 90, 100}) {
    SCOPED_TRACE(depth);
    NeedleCase c;
    ASSERT_TRUE(maker_->make({1024, depth, 0, 7, 12}, &c).ok());
    const std::vector<int32_t> p = c.prompt();
    EXPECT_EQ(int64_t(p.size()), 1024 - 12 - 4);  // the model card's protocol
    EXPECT_EQ(p[0], 4094);
    EXPECT_EQ(decode(p, c.needle_begin, c.needle_end),
              " The special magic " + c.city + " number is: " + c.number + ".");
    EXPECT_EQ(decode(p, c.number_begin, c.number_end), " " + c.number);
    EXPECT_EQ(c.number.size(), 7u);
    EXPECT_EQ(decode(p, int64_t(c.context.size()), int64_t(p.size())),
              " What is the special magic " + c.city + " number? The special magic " + c.city +
                  " number is:");
    if (depth == 0) {
      EXPECT_EQ(c.needle_begin, 1);
    }
    if (depth == 100) {
      EXPECT_EQ(c.needle_end, int64_t(c.context.size()));
    }
    if (depth > 0 && depth < 100) {
      // At a sentence start, near the depth.
      EXPECT_EQ(decode(p, c.needle_begin - 1, c.needle_begin).back(), '.');
      const double at = double(c.needle_begin) / double(c.context.size());
      EXPECT_NEAR(at, depth / 100.0, 0.05);
    }
  }
}

TEST_F(NeedleTest, SeededAndDistinct) {
  NeedleCase a, b, c;
  ASSERT_TRUE(maker_->make({512, 50, 0, 1, 12}, &a).ok());
  ASSERT_TRUE(maker_->make({512, 50, 0, 1, 12}, &b).ok());
  EXPECT_EQ(a.prompt(), b.prompt());
  std::set<std::string> numbers;
  for (int64_t i = 0; i < 8; ++i) {
    ASSERT_TRUE(maker_->make({512, 50, i, 1, 12}, &c).ok());
    numbers.insert(c.number);
  }
  EXPECT_EQ(numbers.size(), 8u);
  ASSERT_TRUE(maker_->make({512, 50, 0, 2, 12}, &c).ok());  // another seed
  EXPECT_NE(c.number, a.number);
}

TEST_F(NeedleTest, Retrieval) {
  NeedleCase c;
  ASSERT_TRUE(maker_->make({512, 30, 0, 1, 12}, &c).ok());
  EXPECT_TRUE(c.retrieved(" " + c.number + ". The"));
  EXPECT_FALSE(c.retrieved(" " + c.number.substr(0, 6) + "0."));
}

TEST_F(NeedleTest, TooShortAHaystackOrLength) {
  NeedleCase c;
  EXPECT_EQ(maker_->make({hay_tokens_ + 100, 50, 0, 1, 12}, &c).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(maker_->make({40, 50, 0, 1, 12}, &c).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(maker_->make({512, 101, 0, 1, 12}, &c).code(), StatusCode::kInvalidArgument);
}

// length - gen_tokens - 4 overflowed for a huge --gen-tokens at a length of 1 to 3: the prompt
// came out near INT64_MAX tokens long, and the error said the haystack was too short for it
// ('a 1-token case needs 9223372036854775758').
TEST_F(NeedleTest, AHugeAnswerLeavesNoRoom) {
  for (int64_t length : {1, 3, 512}) {
    NeedleCase c;
    const Status st = maker_->make({length, 50, 0, 1, INT64_MAX}, &c);
    EXPECT_EQ(st.code(), StatusCode::kOutOfRange) << length;
    EXPECT_NE(st.message().find("leaves no room"), std::string::npos) << st.message();
  }
}

}  // namespace
}  // namespace tidal::launch
