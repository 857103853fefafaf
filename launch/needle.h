// SPDX-License-Identifier: Apache-2.0
// Needle-in-a-haystack cases, built at token level exactly as model/tidal-tiny-16k/MODEL_CARD.md
// (and model/training/train_tidal_tiny.py, which trained and evaluated the model) describes them:
// prompt = BOS + haystack (a seeded offset of a held-out text, moved to a sentence start) with the
// needle " The special magic {city} number is: {7 digits}." at the depth (snapped back to a
// sentence boundary; 0% right after BOS, 100% just before the question) + the question " What is
// the special magic {city} number? The special magic {city} number is:". The prompt is
// length - gen_tokens - 4 tokens long; a case is retrieved when the 7-digit number appears in the
// greedy continuation.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/tokenizer.h"
#include "runtime/status.h"

namespace tidal::launch {

// A tokenized text with its sentence starts.
struct Haystack {
  std::string path;
  std::vector<int32_t> tokens;    // the cleaned text, no BOS
  std::vector<uint8_t> boundary;  // [tokens + 1]: 1 where token p-1 ends a sentence ('.', '!' or
                                  // '?' before closing quotes) and token p starts with whitespace
};

// Hard-wrapped lines joined into paragraphs, paragraphs separated by one blank line (the training
// script's clean_austen).
std::string clean_text(const std::string& text);
// Reads, cleans and tokenizes `path`; marks the sentence starts from each id's decoded piece.
Status load_haystack(const std::string& path, const model::Tokenizer& tokenizer, Haystack* out);

// Which case: one cell (length, depth) of the grid and the needle's index in it. The city, the
// number and the haystack offset are drawn from (seed, length, depth, index) alone.
struct NeedleSpec {
  int64_t length = 4096;      // the context the case fills: prompt + gen_tokens + 4
  int64_t depth_percent = 50;  // 0..100
  int64_t index = 0;
  uint64_t seed = 1;
  int64_t gen_tokens = 12;
};

struct NeedleCase {
  NeedleSpec spec;
  std::string city;
  std::string number;            // 7 digits
  int64_t haystack_offset = 0;   // the haystack token the case starts from
  int64_t needle_begin = 0;      // prompt positions of the needle sentence [begin, end)
  int64_t needle_end = 0;
  int64_t number_begin = 0;      // ... and of its number's tokens (" " and 7 digits)
  int64_t number_end = 0;
  std::vector<int32_t> context;   // BOS + haystack with the needle
  std::vector<int32_t> question;  // the question tokens (the prompt ends with them)

  std::vector<int32_t> prompt() const;
  // Whether the number appears in `output` (the decoded continuation).
  bool retrieved(const std::string& output) const { return output.find(number) != std::string::npos; }
};

// Builds cases over one haystack with one tokenizer (the needle and question pieces of every
// city tokenized once).
class NeedleMaker {
 public:
  // Fails when the pieces do not compose: the needle sentence must tokenize as its parts do.
  static Status create(const model::Tokenizer& tokenizer, int32_t bos, Haystack haystack,
                       std::unique_ptr<NeedleMaker>* out);
  // out_of_range when the haystack is too short or the length too small for the needle.
  Status make(const NeedleSpec& spec, NeedleCase* out) const;
  // Every case of the grid lengths x depths x `needles` indices, in that order (appended to out).
  Status make_grid(const std::vector<int64_t>& lengths, const std::vector<int64_t>& depths,
                   int64_t needles, uint64_t seed, int64_t gen_tokens,
                   std::vector<NeedleCase>* out) const;
  const Haystack& haystack() const { return haystack_; }

 private:
  NeedleMaker() = default;
  std::vector<int32_t> number_ids(const std::string& digits) const;

  int32_t bos_ = 0;
  Haystack haystack_;
  std::vector<std::string> cities_;
  std::vector<std::vector<int32_t>> needle_ids_;    // per city: " The special magic X number is:"
  std::vector<std::vector<int32_t>> question_ids_;  // per city
  std::vector<int32_t> dot_ids_;                    // "."
  const model::Tokenizer* tokenizer_ = nullptr;
};

}  // namespace tidal::launch
