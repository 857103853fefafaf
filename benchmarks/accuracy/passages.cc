// SPDX-License-Identifier: Apache-2.0
#include "benchmarks/accuracy/passages.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace tidal::bench {
namespace {

namespace fs = std::filesystem;

struct Corpus {
  std::string name;                // subfolder
  std::vector<std::string> files;  // relative paths, in the seeded visiting order
};

Status list_corpora(const std::string& dir, std::vector<Corpus>* out) {
  std::error_code ec;
  std::vector<std::string> folders;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_directory()) folders.push_back(entry.path().filename().string());
  }
  if (ec) return not_found(dir + ": cannot list (" + ec.message() + ")");
  std::sort(folders.begin(), folders.end());
  for (const std::string& folder : folders) {
    Corpus c;
    c.name = folder;
    for (const auto& entry : fs::directory_iterator(fs::path(dir) / folder, ec)) {
      if (entry.is_regular_file() && entry.path().extension() == ".txt")
        c.files.push_back(folder + "/" + entry.path().filename().string());
    }
    std::sort(c.files.begin(), c.files.end());
    if (!c.files.empty()) out->push_back(std::move(c));
  }
  if (out->empty()) return not_found(dir + ": no subfolder holds .txt files");
  return ok_status();
}

Status read_file(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found(path + ": cannot open");
  std::ostringstream s;
  s << in.rdbuf();
  *out = s.str();
  return ok_status();
}

// The first sentence start at or after `from`: past a '.', '!' or '?' followed by whitespace.
size_t sentence_start(const std::string& text, size_t from) {
  for (size_t i = from; i + 1 < text.size(); ++i) {
    const char c = text[i];
    if ((c == '.' || c == '!' || c == '?') &&
        std::isspace(static_cast<unsigned char>(text[i + 1]))) {
      size_t j = i + 1;
      while (j < text.size() && std::isspace(static_cast<unsigned char>(text[j]))) ++j;
      if (j < text.size()) return j;
    }
  }
  return from;
}

// `bytes` bytes of text from `begin` with every whitespace run turned into one space.
std::string squeeze(const std::string& text, size_t begin, size_t bytes) {
  std::string out;
  out.reserve(bytes);
  for (size_t i = begin; i < text.size() && out.size() < bytes; ++i) {
    const bool space = std::isspace(static_cast<unsigned char>(text[i]));
    if (!space) {
      out += text[i];
    } else if (!out.empty() && out.back() != ' ') {
      out += ' ';
    }
  }
  return out;
}

}  // namespace

Status pick_passages(const std::string& text_dir, const model::Tokenizer& tokenizer, int64_t count,
                     int64_t tokens, uint64_t seed, std::vector<Passage>* out) {
  std::vector<Corpus> corpora;
  TIDAL_RETURN_IF_ERROR(list_corpora(text_dir, &corpora));
  std::mt19937_64 rng(seed);
  for (Corpus& c : corpora) std::shuffle(c.files.begin(), c.files.end(), rng);
  out->clear();
  for (int64_t i = 0; i < count; ++i) {
    const Corpus& c = corpora[size_t(i) % corpora.size()];
    Passage p;
    p.file = c.files[(size_t(i) / corpora.size()) % c.files.size()];
    std::string text;
    TIDAL_RETURN_IF_ERROR(read_file(text_dir + "/" + p.file, &text));
    const uint64_t lo = text.size() / 10, span = std::max<uint64_t>(text.size() * 7 / 10, 1);
    p.offset = int64_t(sentence_start(text, size_t(lo + rng() % span)));
    // Grow the passage until it encodes to enough tokens (a token is rarely over 8 bytes).
    for (size_t bytes = size_t(tokens) * 8;; bytes *= 2) {
      const std::string passage = squeeze(text, size_t(p.offset), bytes);
      TIDAL_RETURN_IF_ERROR(tokenizer.encode(passage, /*add_bos=*/true, &p.tokens));
      if (int64_t(p.tokens.size()) >= tokens) break;
      if (passage.size() < bytes) {
        return out_of_range(p.file + ": fewer than " + std::to_string(tokens) +
                            " tokens after byte " + std::to_string(p.offset));
      }
    }
    p.tokens.resize(size_t(tokens));
    out->push_back(std::move(p));
  }
  return ok_status();
}

}  // namespace tidal::bench
