// SPDX-License-Identifier: Apache-2.0
// tokenizer.json parser fuzzing: thousands of seeded corruptions (byte flips, truncations,
// deletions, duplicated spans, wrong-typed or missing fields) of two small valid files built
// here, byte-level and SentencePiece-style. Loading must return a Status, never crash, and a
// tokenizer that loads must encode, decode and stream without crashing.
#include <gtest/gtest.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "model/hf_tokenizer.h"
#include "model/tokenizer.h"
#include "tests/testing/testing.h"

namespace tidal::model {
namespace {

using json = nlohmann::json;

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

// A Llama-3-shaped file: the 256 GPT-2 byte characters, a few merges, special tokens, the Llama-3
// Split regex then ByteLevel, and the ByteLevel decoder.
json byte_level_tokenizer() {
  json vocab = json::object();
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    vocab[utf8(keep ? b : next++)] = b;
  }
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"\xC4\xA0", "t"}, {"h", "e"}, {"\xC4\xA0t", "he"}, {"i", "n"}, {"\xC4\xA0", "a"}};
  json merge_list = json::array();
  int id = 256;
  for (const auto& [a, b] : merges) {
    vocab[a + b] = id++;
    merge_list.push_back(a + " " + b);
  }
  json added = json::array();
  for (const char* t : {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                        "<|end_header_id|>", "<|eot_id|>"}) {
    added.push_back({{"id", id++},
                     {"content", t},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  const std::string regex = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|)"
                            R"( ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer",
           {{"type", "Sequence"},
            {"pretokenizers",
             {{{"type", "Split"},
               {"pattern", {{"Regex", regex}}},
               {"behavior", "Isolated"},
               {"invert", false}},
              {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model",
           {{"type", "BPE"}, {"ignore_merges", true}, {"vocab", vocab}, {"merges", merge_list}}}};
}

// A Llama-2-shaped file: <unk>/<s>/</s>, 256 byte tokens, a few pieces and pair-form merges,
// Prepend + Replace normalizer and the Replace/ByteFallback/Fuse/Strip decoder chain.
json sentencepiece_style_tokenizer() {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  int id = 3;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = id++;
  }
  for (const char* piece : {"\xE2\x96\x81", "t", "h", "e", "a", "n", "d", "o"}) {
    vocab[piece] = id++;
  }
  json merges = json::array();
  for (const auto& [a, b] : std::vector<std::pair<std::string, std::string>>{
           {"\xE2\x96\x81", "t"}, {"h", "e"}, {"\xE2\x96\x81t", "he"}, {"a", "n"}, {"an", "d"}}) {
    vocab[a + b] = id++;
    merges.push_back({a, b});
  }
  json added = json::array();
  for (int i = 0; i < 3; ++i) {
    const char* names[] = {"<unk>", "<s>", "</s>"};
    added.push_back({{"id", i}, {"content", names[i]}, {"special", true}, {"normalized", false}});
  }
  const std::string space_mark = "\xE2\x96\x81";
  return {{"added_tokens", added},
          {"normalizer",
           {{"type", "Sequence"},
            {"normalizers",
             {{{"type", "Prepend"}, {"prepend", space_mark}},
              {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", space_mark}}}}}},
          {"pre_tokenizer", nullptr},
          {"decoder",
           {{"type", "Sequence"},
            {"decoders",
             {{{"type", "Replace"}, {"pattern", {{"String", space_mark}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}},
              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
          {"model",
           {{"type", "BPE"},
            {"unk_token", "<unk>"},
            {"byte_fallback", true},
            {"fuse_unk", true},
            {"vocab", vocab},
            {"merges", merges}}}};
}

const std::vector<std::string>& sample_texts() {
  static const std::vector<std::string> texts = {
      "",
      "the end and then",
      "  two  spaces\nnewline \xC3\xA9 \xE6\xBC\xA2\xE5\xAD\x97 \xF0\x9F\x99\x82",
      "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|></s><s>",
      "\t\r\n 123456 !!!??? don't I'll",
  };
  return texts;
}

// Uses a tokenizer the way the engine does; any crash here fails the test binary.
void exercise(const Tokenizer& tok, std::mt19937* rng) {
  std::vector<int32_t> ids;
  std::string text;
  for (const std::string& sample : sample_texts()) {
    if (!tok.encode(sample, /*add_bos=*/true, &ids).ok()) continue;
    for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok.vocab_size()) << id;
    EXPECT_TRUE(tok.decode(ids, /*skip_special=*/false, &text).ok());
    EXPECT_TRUE(tok.decode(ids, /*skip_special=*/true, &text).ok());
    StreamDecoder stream(tok, /*skip_special=*/true);
    std::string piece;
    for (int32_t id : ids) EXPECT_TRUE(stream.push(id, &piece).ok());
    EXPECT_TRUE(stream.finish(&piece).ok());
  }
  if (tok.vocab_size() > 0) {
    std::uniform_int_distribution<int32_t> any(0, tok.vocab_size() - 1);
    std::vector<int32_t> random_ids(16);
    for (int32_t& id : random_ids) id = any(*rng);
    EXPECT_TRUE(tok.decode(random_ids, false, &text).ok());
  }
  EXPECT_FALSE(tok.decode({tok.vocab_size()}, false, &text).ok());
  (void)tok.token_to_id("<s>");
  (void)tok.is_special(-5);
}

// One random value of some JSON type, biased towards the awkward ones.
json random_value(std::mt19937* rng) {
  switch ((*rng)() % 14) {
    case 0: return nullptr;
    case 1: return true;
    case 2: return 0;
    case 3: return -1;
    case 4: return int64_t{1} << 40;
    case 5: return 1e300;
    case 6: return 2.5;
    case 7: return "";
    case 8: return "Regex";
    case 9: return json::array();
    case 10: return json::object();
    case 11: return json::array({1, "a", nullptr});
    case 12: return {{"type", "Bogus"}};
    default: return {{"String", ""}};
  }
}

// Replaces, removes or duplicates one node found by a random walk from the root.
void mutate_structure(json* root, std::mt19937* rng) {
  json* node = root;
  const int depth = 1 + int((*rng)() % 6);
  for (int d = 0; d < depth; ++d) {
    if ((node->is_object() || node->is_array()) && !node->empty()) {
      const size_t index = (*rng)() % node->size();
      json* child = nullptr;
      if (node->is_array()) {
        child = &(*node)[index];
      } else {
        auto it = node->begin();
        std::advance(it, index);
        child = &it.value();
      }
      if (d + 1 < depth && (child->is_object() || child->is_array()) && !child->empty()) {
        node = child;
        continue;
      }
      switch ((*rng)() % 3) {
        case 0: *child = random_value(rng); break;
        case 1:
          if (node->is_array()) {
            node->erase(index);
          } else {
            auto it = node->begin();
            std::advance(it, index);
            node->erase(it);
          }
          break;
        default:
          if (node->is_array())
            node->push_back(*child);  // a duplicate merge, token or step
          else
            *child = json::array({*child, *child});
          break;
      }
      return;
    }
    break;
  }
  *node = random_value(rng);
}

// Byte-level damage to the serialized text.
std::string mutate_bytes(std::string text, std::mt19937* rng) {
  if (text.empty()) return text;
  auto pick = [&](size_t n) { return size_t((*rng)() % n); };
  const int edits = 1 + int(pick(4));
  for (int e = 0; e < edits && !text.empty(); ++e) {
    switch (pick(4)) {
      case 0:  // flip
        text[pick(text.size())] = char((*rng)() & 0xFF);
        break;
      case 1:  // truncate
        text.resize(pick(text.size()));
        break;
      case 2: {  // delete a span
        const size_t at = pick(text.size());
        text.erase(at, 1 + pick(std::min<size_t>(64, text.size() - at)));
        break;
      }
      default: {  // duplicate a span somewhere else
        const size_t at = pick(text.size());
        const std::string span = text.substr(at, 1 + pick(64));
        text.insert(pick(text.size() + 1), span);
        break;
      }
    }
  }
  return text;
}

void fuzz(const json& base, uint32_t seed, int iterations, int* loaded) {
  std::mt19937 rng(seed);
  // The unmutated file must load: otherwise the fuzzing only exercises the error paths.
  std::unique_ptr<Tokenizer> tok;
  const Status s = load_hf_tokenizer(base.dump(), "base", "", "", &tok);
  ASSERT_TRUE(s.ok()) << s.to_string();
  exercise(*tok, &rng);
  for (int i = 0; i < iterations; ++i) {
    std::string text;
    if (rng() % 2 == 0) {
      text = mutate_bytes(base.dump(), &rng);
    } else {
      json copy = base;
      const int edits = 1 + int(rng() % 3);
      for (int e = 0; e < edits; ++e) mutate_structure(&copy, &rng);
      text = copy.dump();
    }
    tok.reset();
    const Status status = load_hf_tokenizer(text, "fuzz", "", "", &tok);
    if (!status.ok()) {
      EXPECT_EQ(status.message().find('\n'), std::string::npos) << status.message();
      continue;
    }
    ASSERT_NE(tok, nullptr);
    ++*loaded;
    exercise(*tok, &rng);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(TokenizerFuzz, CorruptedByteLevelJsonNeverCrashes) {
  int loaded = 0;
  fuzz(byte_level_tokenizer(), /*seed=*/1234, /*iterations=*/5000, &loaded);
  std::printf("byte-level: %d of 5000 corrupted files still loaded\n", loaded);
  EXPECT_GT(loaded, 0);  // some mutations are harmless: the load-and-use path is exercised too
}

TEST(TokenizerFuzz, CorruptedSentencePieceStyleJsonNeverCrashes) {
  int loaded = 0;
  fuzz(sentencepiece_style_tokenizer(), /*seed=*/5678, /*iterations=*/5000, &loaded);
  std::printf("sentencepiece-style: %d of 5000 corrupted files still loaded\n", loaded);
  EXPECT_GT(loaded, 0);
}

// Through Tokenizer::load, which picks the format by content: damaged files of either kind.
TEST(TokenizerFuzz, CorruptedFilesThroughLoadNeverCrash) {
  std::mt19937 rng(99);
  const std::string dir = ::tidal::testing::temp_dir("tok_fuzz");
  std::vector<std::string> bases = {byte_level_tokenizer().dump()};
  const bool have_model = ::tidal::testing::shared_exists("tokenizers/llama2/tokenizer.model");
  if (have_model) {
    bases.push_back(::tidal::testing::read_file(
        ::tidal::testing::shared_path("tokenizers/llama2/tokenizer.model")));
  }
  for (int i = 0; i < 200; ++i) {
    const std::string& base = bases[i % bases.size()];
    const std::string path = dir + "/tokenizer_" + std::to_string(i % 4);
    ::tidal::testing::write_file(path, mutate_bytes(base, &rng));
    std::unique_ptr<Tokenizer> tok;
    if (Tokenizer::load(path, &tok).ok()) exercise(*tok, &rng);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace tidal::model
