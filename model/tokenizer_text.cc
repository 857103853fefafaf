// SPDX-License-Identifier: Apache-2.0
// Text helpers shared by the tokenizers: UTF-8 validation and repair as HF decoders do it, the
// GPT-2 byte-level alphabet, and a PCRE2 regex that splits text into pre-tokens.
#include "model/tokenizer_text.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cctype>

namespace tidal::model::text {

// ---- UTF-8 ----------------------------------------------------------------------------------

void append_utf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(char(cp));
  } else if (cp < 0x800) {
    out->push_back(char(0xC0 | (cp >> 6)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(char(0xE0 | (cp >> 12)));
    out->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(char(0xF0 | (cp >> 18)));
    out->push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  }
}

// Rust's String::from_utf8_lossy, which HF decoders use: each maximal invalid subpart becomes
// one U+FFFD, so our decode() agrees with transformers byte for byte.
std::string to_valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const size_t n = valid_utf8_at(s, i);
    if (n > 0) {
      out.append(s.data() + i, n);
      i += n;
      continue;
    }
    // Skip the longest prefix of a well-formed sequence (at least one byte).
    size_t skip = 1;
    const auto b0 = static_cast<unsigned char>(s[i]);
    unsigned char lo = 0x80, hi = 0xBF;
    size_t want = 0;
    if (b0 >= 0xC2 && b0 <= 0xDF) want = 2;
    if (b0 >= 0xE0 && b0 <= 0xEF) {
      want = 3;
      if (b0 == 0xE0) lo = 0xA0;
      if (b0 == 0xED) hi = 0x9F;
    }
    if (b0 >= 0xF0 && b0 <= 0xF4) {
      want = 4;
      if (b0 == 0xF0) lo = 0x90;
      if (b0 == 0xF4) hi = 0x8F;
    }
    for (size_t k = 1; k < want && i + k < s.size(); ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
      skip = k + 1;
    }
    out += kReplacementChar;
    i += skip;
  }
  return out;
}

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = valid_utf8_at(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

size_t char_len(std::string_view s, size_t i) {
  const size_t n = valid_utf8_at(s, i);
  return n == 0 ? 1 : n;
}

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_word_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x80 || std::isalnum(u) || c == '_';
}

void replace_all(std::string* s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s->find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(*s, pos, hit - pos);
    out += to;
  }
  if (pos == 0) return;
  out.append(*s, pos, std::string::npos);
  *s = std::move(out);
}

// ---- GPT-2 byte-level alphabet --------------------------------------------------------------

ByteAlphabet::ByteAlphabet() {
  cp_to_byte.fill(-1);
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    const int cp = keep ? b : next++;
    append_utf8(uint32_t(cp), &byte_to_utf8[size_t(b)]);
    cp_to_byte[size_t(cp)] = int16_t(b);
  }
}

const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet alphabet;
  return alphabet;
}

// ---- PCRE2 ----------------------------------------------------------------------------------

Regex::~Regex() {
  if (code_ != nullptr) pcre2_code_free(static_cast<pcre2_code*>(code_));
}

Status Regex::compile(const std::string& pattern, bool literal, const std::string& where) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  const uint32_t options = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   options, &error, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR buffer[256];
    pcre2_get_error_message(error, buffer, sizeof(buffer));
    return invalid_argument(where + ": bad regex at offset " + std::to_string(offset) + ": " +
                            reinterpret_cast<const char*>(buffer));
  }
  if (code_ != nullptr) pcre2_code_free(static_cast<pcre2_code*>(code_));
  code_ = code;
  // JIT makes the Llama-3 split several times faster; the interpreter is the fallback.
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return ok_status();
}

Status Regex::find_all(std::string_view subject,
                       std::vector<std::pair<size_t, size_t>>* spans) const {
  const auto* code = static_cast<const pcre2_code*>(code_);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  pcre2_match_context* mc = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* stack = jit_ ? pcre2_jit_stack_create(32 * 1024, 1024 * 1024, nullptr) : nullptr;
  if (!md || !mc || (jit_ && !stack)) {
    if (md) pcre2_match_data_free(md);
    if (mc) pcre2_match_context_free(mc);
    if (stack) pcre2_jit_stack_free(stack);
    return out_of_memory("regex match data");
  }
  if (stack) pcre2_jit_stack_assign(mc, nullptr, stack);
  Status status;
  const auto* data = reinterpret_cast<PCRE2_SPTR>(subject.data());
  size_t offset = 0;
  // The UTF check scans the whole subject: once is enough, or splitting megabytes is
  // quadratic.
  uint32_t options = 0;
  while (offset <= subject.size()) {
    const int rc = pcre2_match(code, data, subject.size(), offset, options, md, mc);
    options = PCRE2_NO_UTF_CHECK;
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR buffer[256];
      pcre2_get_error_message(rc, buffer, sizeof(buffer));
      status = invalid_argument(std::string("pre-tokenizer regex failed: ") +
                                reinterpret_cast<const char*>(buffer));
      break;
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t begin = ov[0], end = ov[1];
    if (end <= begin || end > subject.size()) {  // empty match: step over one character
      if (begin >= subject.size()) break;
      offset = begin + char_len(subject, begin);
      continue;
    }
    spans->emplace_back(begin, end);
    offset = end;
  }
  pcre2_match_data_free(md);
  pcre2_match_context_free(mc);
  if (stack) pcre2_jit_stack_free(stack);
  return status;
}

const char* const kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

}  // namespace tidal::model::text
