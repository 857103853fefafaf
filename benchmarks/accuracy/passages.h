// SPDX-License-Identifier: Apache-2.0
// Prompts for accuracy benchmarks: deterministic, seeded passages cut from the public-domain
// texts in ../shared/text (one subfolder per corpus: austen/, kjv/, sotu/, ...), encoded with
// the model's tokenizer and cut to a fixed number of tokens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/tokenizer.h"
#include "runtime/status.h"

namespace tidal::bench {

struct Passage {
  std::string file;             // relative to the text directory, e.g. "austen/emma.txt"
  int64_t offset = 0;           // byte where the passage starts (a sentence start)
  std::vector<int32_t> tokens;  // BOS + the passage, exactly the requested length
};

// Picks `count` passages: prompt i comes from subfolder i mod F (subfolders sorted by name, each
// holding *.txt files), cycling through that subfolder's files in a seeded order, at a seeded
// offset between 10% and 80% of the file, moved forward to the next sentence start. Whitespace
// runs (hard line wraps) become one space. Each passage is encoded with BOS and cut to `tokens`.
// Errors: the directory has no subfolder with .txt files, a file is unreadable, or a passage
// cannot yield `tokens` tokens.
Status pick_passages(const std::string& text_dir, const model::Tokenizer& tokenizer, int64_t count,
                     int64_t tokens, uint64_t seed, std::vector<Passage>* out);

}  // namespace tidal::bench
