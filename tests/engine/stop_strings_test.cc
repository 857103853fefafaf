// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/stop_strings.h"

#include <gtest/gtest.h>

#include <memory>
#include <optional>

#include "model/tokenizer.h"
#include "runtime/engine/request.h"

namespace tidal::engine {
namespace {

TEST(StopStrings, HoldsBackPossiblePrefixesAndCutsAtTheMatch) {
  StopStringMatcher m({"\n\n", "THE END"});
  std::string out;
  EXPECT_FALSE(m.feed("Once upon", &out));
  EXPECT_EQ(out, "Once upon");
  EXPECT_FALSE(m.feed(" a time.\n", &out));
  EXPECT_EQ(out, "Once upon a time.");  // "\n" may start "\n\n"
  EXPECT_FALSE(m.feed("TH", &out));
  EXPECT_EQ(out, "Once upon a time.\n");  // "\nTH" cannot start "\n\n"; "TH" may start "THE END"
  EXPECT_TRUE(m.feed("E ENDing", &out));
  EXPECT_EQ(out, "Once upon a time.\n");
}

TEST(StopStrings, FlushReleasesTheTail) {
  StopStringMatcher m({"xyz"});
  std::string out;
  EXPECT_FALSE(m.feed("abcxy", &out));
  EXPECT_EQ(out, "abc");
  m.flush(&out);
  EXPECT_EQ(out, "abcxy");
}

// Text the decoder holds back to the end (a partial UTF-8 character: U+FFFD once flushed) may
// complete a stop string as the request ends for another reason. A stop string outranks the
// others (RequestState::accept; vLLM and OpenAI report "stop" there too): the finish is the stop
// string's, and the match is not emitted.
TEST(StopStrings, TextFlushedAtTheEndCanCompleteAStopString) {
  std::unique_ptr<model::Tokenizer> tok;
  ASSERT_TRUE(model::Tokenizer::load_from_dir(
                  std::string(TIDAL_SOURCE_DIR) + "/model/tidal-tiny-16k", &tok)
                  .ok());
  const int32_t b = 65, lead_byte = 158;  // "b"; the byte 0xE2 alone (a character's first byte)
  for (const FinishReason reason :
       {FinishReason::kLength, FinishReason::kContext, FinishReason::kEos,
        FinishReason::kKvCapacity, FinishReason::kCancelled}) {
    GenerationRequest r;
    r.prompt = {64};  // "a"
    r.stop.max_new_tokens = 2;
    r.stop.stop_strings = {"b\xEF\xBF\xBD"};  // "b" then U+FFFD
    RequestState s(r, tok.get());
    GenerationEvent ev;
    std::optional<FinishReason> finish;
    ASSERT_TRUE(s.accept(b, false, &ev, &finish).ok());
    EXPECT_EQ(ev.text, "");  // may start the stop string
    EXPECT_FALSE(finish.has_value());
    ASSERT_TRUE(s.accept(lead_byte, false, &ev, &finish).ok());
    EXPECT_EQ(finish, std::optional<FinishReason>(FinishReason::kLength));
    s.finish(reason, &ev);
    EXPECT_TRUE(ev.finished);
    EXPECT_EQ(ev.text, "") << finish_reason_name(reason);
    EXPECT_EQ(s.result().text, "") << finish_reason_name(reason);
    // A cancelled request stays cancelled: the client (or an error) ended it, not its text.
    EXPECT_EQ(s.result().finish,
              reason == FinishReason::kCancelled ? reason : FinishReason::kStopString)
        << finish_reason_name(reason);
  }
}

}  // namespace
}  // namespace tidal::engine
