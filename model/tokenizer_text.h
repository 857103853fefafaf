// SPDX-License-Identifier: Apache-2.0
// Text helpers shared by the tokenizers: UTF-8 validation and repair as HF decoders do it, the
// GPT-2 byte-level alphabet, and a PCRE2 regex that splits text into pre-tokens.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/status.h"
#include "runtime/utf8.h"

namespace tidal::model::text {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

void append_utf8(uint32_t cp, std::string* out);
using tidal::valid_utf8_at;  // runtime/utf8.h
// Rust's String::from_utf8_lossy, which HF decoders use: each maximal invalid subpart becomes
// one U+FFFD.
std::string to_valid_utf8(std::string_view s);
bool is_valid_utf8(std::string_view s);
// Byte length of the UTF-8 character starting at s[i] (1 for a stray byte).
size_t char_len(std::string_view s, size_t i);
bool is_ascii_space(char c);
bool is_word_char(char c);
void replace_all(std::string* s, std::string_view from, std::string_view to);

// GPT-2 maps every byte to a printable code point so that BPE never sees spaces or controls:
// printable Latin-1 bytes map to themselves, the rest to U+0100.. in byte order.
struct ByteAlphabet {
  std::array<std::string, 256> byte_to_utf8;
  std::array<int16_t, 324> cp_to_byte;  // code points < 0x144; -1 when unmapped

  ByteAlphabet();
};
const ByteAlphabet& byte_alphabet();

// A compiled PCRE2 pattern (UTF, Unicode properties; JIT when available).
class Regex {
 public:
  Regex() = default;
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  Status compile(const std::string& pattern, bool literal, const std::string& where);
  // Appends the [begin, end) spans of the non-empty matches in `subject` (valid UTF-8).
  Status find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>* spans) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
};

// GPT-2's pre-tokenizer regex, used by ByteLevel with use_regex=true.
extern const char* const kGpt2Regex;

}  // namespace tidal::model::text
