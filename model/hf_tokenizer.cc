// SPDX-License-Identifier: Apache-2.0
// Hugging Face tokenizer.json: parsing (every JSON value type-checked), added-token splitting,
// normalizers (Prepend, Replace), pre-tokenizers (Split through PCRE2, ByteLevel, Metaspace), the
// BPE model (merges by rank with a priority queue, byte fallback, ignore_merges, a per-word cache)
// and the decoder chain (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace).
#include "model/hf_tokenizer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <mutex>
#include <new>
#include <nlohmann/json.hpp>
#include <queue>
#include <unordered_map>
#include <utility>
#include <vector>

#include "model/tokenizer_text.h"

namespace tidal::model {
namespace {

using json = nlohmann::json;
using namespace text;  // NOLINT: the helpers this file is built from

// Words longer than this are not cached: they are rare, and a whole SentencePiece-style text
// (no pre-tokenizer) would otherwise be stored as one entry.
constexpr size_t kMaxCachedWordBytes = 128;
constexpr size_t kMaxCacheEntries = 1 << 18;

// ---- JSON helpers ---------------------------------------------------------------------------

// True when `v` holds no containers more than `depth` levels down (a bounded walk).
bool shallow(const json& v, int depth) {
  if (!v.is_structured()) return true;
  if (depth == 0) return false;
  for (const json& e : v) {
    if (!shallow(e, depth - 1)) return false;
  }
  return true;
}

std::string short_dump(const json& v) {
  // dump() recurses once per level: a value nested thousands deep would overflow the stack.
  if (!shallow(v, 4)) return std::string("a deeply nested ") + v.type_name();
  std::string s = v.dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 60) + "...";
  return s;
}

const char* type_name(const json& v) { return v.type_name(); }

// Optional fields: null or absent leave *out unchanged.
Status get_bool(const json& obj, const char* key, const std::string& where, bool* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return ok_status();
  if (!it->is_boolean()) {
    return invalid_argument(where + "." + key + " must be a boolean, not " + type_name(*it));
  }
  *out = it->get<bool>();
  return ok_status();
}

Status get_string(const json& obj, const char* key, const std::string& where, std::string* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return ok_status();
  if (!it->is_string()) {
    return invalid_argument(where + "." + key + " must be a string, not " + type_name(*it));
  }
  *out = it->get<std::string>();
  return ok_status();
}

Status get_small_int(const json& obj, const char* key, const std::string& where, int* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return ok_status();
  if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > (1 << 20)) {
    return invalid_argument(where + "." + key + " must be a small non-negative integer, not " +
                            short_dump(*it));
  }
  *out = int(it->get<int64_t>());
  return ok_status();
}

Status get_type(const json& obj, const std::string& where, std::string* type) {
  if (!obj.is_object()) {
    return invalid_argument(where + " must be an object, not " + type_name(obj));
  }
  auto it = obj.find("type");
  if (it == obj.end() || !it->is_string()) {
    return invalid_argument(where + " has no string \"type\"");
  }
  *type = it->get<std::string>();
  return ok_status();
}

// A {"String": "..."} or {"Regex": "..."} pattern.
Status get_pattern(const json& obj, const std::string& where, std::string* text, bool* is_regex) {
  auto it = obj.find("pattern");
  if (it == obj.end() || !it->is_object()) {
    return invalid_argument(where + ".pattern must be an object");
  }
  if (auto s = it->find("String"); s != it->end() && s->is_string()) {
    *text = s->get<std::string>();
    *is_regex = false;
  } else if (auto r = it->find("Regex"); r != it->end() && r->is_string()) {
    *text = r->get<std::string>();
    *is_regex = true;
  } else {
    return invalid_argument(where + ".pattern must hold a string \"String\" or \"Regex\"");
  }
  if (text->empty()) return invalid_argument(where + ".pattern is empty");
  return ok_status();
}

// ---- The pipeline ---------------------------------------------------------------------------

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false, lstrip = false, rstrip = false, single_word = false;
};

struct NormalizerStep {
  enum class Kind { kPrepend, kReplace } kind;
  std::string from, to;  // Prepend: `to` only
};

struct PreTokenizerStep {
  enum class Kind { kSplit, kByteLevel, kMetaspace } kind = Kind::kSplit;
  std::shared_ptr<Regex> regex;     // Split; ByteLevel with use_regex
  bool remove_matches = false;      // Split behavior "Removed" (else "Isolated")
  bool add_prefix_space = false;    // ByteLevel; Metaspace (prepend_scheme "always")
  bool prepend_first_only = false;  // Metaspace prepend_scheme "first"
  bool split = true;                // Metaspace
  std::string replacement;          // Metaspace
};

struct DecoderStep {
  enum class Kind {
    kByteLevel,
    kReplace,
    kByteFallback,
    kFuse,
    kStrip,
    kMetaspace
  } kind = Kind::kFuse;
  std::string from, to;     // Replace; Strip: `from` is the content; Metaspace: `from`
  int start = 0, stop = 0;  // Strip
  bool prepend = true;      // Metaspace: strip the first token's leading space
};

struct PairHash {
  size_t operator()(uint64_t k) const { return size_t(k ^ (k >> 29)) * 0x9E3779B97F4A7C15ull; }
};

class HfTokenizer final : public Tokenizer {
 public:
  Status parse(const json& root, const std::string& bos_token, const std::string& eos_token);

  Status encode(std::string_view text, bool add_bos, std::vector<int32_t>* ids) const override;
  Status decode(const std::vector<int32_t>& ids, bool skip_special,
                std::string* text) const override;
  int32_t vocab_size() const override { return int32_t(id_to_token_.size()); }
  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  int32_t token_to_id(std::string_view token) const override {
    auto it = token_to_id_.find(std::string(token));
    return it == token_to_id_.end() ? -1 : it->second;
  }
  bool is_special(int32_t id) const override {
    return id >= 0 && size_t(id) < special_.size() && special_[id];
  }

 private:
  // The token that holds `id` so far, or nullptr while the id is unused.
  const std::string* token_at(int32_t id) const {
    if (id < 0 || size_t(id) >= id_to_token_.size()) return nullptr;
    auto it = token_to_id_.find(id_to_token_[size_t(id)]);
    return it != token_to_id_.end() && it->second == id ? &id_to_token_[size_t(id)] : nullptr;
  }
  Status parse_model(const json& model);
  Status parse_added_tokens(const json& added);
  Status parse_normalizer(const json& n, const std::string& where);
  Status parse_pre_tokenizer(const json& p, const std::string& where);
  Status parse_decoder(const json& d, const std::string& where);

  // Finds the next added token in text[from..): its span (with lstrip/rstrip whitespace) and id.
  bool next_added(std::string_view text, size_t from, size_t* begin, size_t* end,
                  int32_t* id) const;
  Status encode_segment(std::string_view segment, bool first, std::vector<int32_t>* ids) const;
  void encode_word(std::string_view word, std::vector<int32_t>* ids) const;
  void bpe(std::string_view word, std::vector<int32_t>* ids) const;

  std::unordered_map<std::string, int32_t> token_to_id_;  // vocab and added tokens
  std::vector<std::string> id_to_token_;
  std::vector<bool> special_;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>, PairHash> merges_;  // -> rank, id
  int32_t unk_id_ = -1;
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  std::array<int32_t, 256> byte_ids_{};  // "<0xNN>" ids for byte fallback, -1 when absent

  std::vector<AddedToken> added_;
  std::array<std::vector<int>, 256> added_by_first_byte_;  // indices into added_, longest first
  std::vector<NormalizerStep> normalizers_;
  std::vector<PreTokenizerStep> pre_tokenizers_;
  std::vector<DecoderStep> decoders_;
  std::string word_mark_;  // cut words before it (SentencePiece-style files); empty: don't
  int32_t bos_id_ = -1, eos_id_ = -1;

  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

// ---- Parsing --------------------------------------------------------------------------------

Status HfTokenizer::parse(const json& root, const std::string& bos_token,
                          const std::string& eos_token) {
  if (!root.is_object()) {
    return invalid_argument(std::string("expected a JSON object, not ") + type_name(root));
  }
  auto model = root.find("model");
  if (model == root.end() || model->is_null()) return invalid_argument("no \"model\"");
  TIDAL_RETURN_IF_ERROR(parse_model(*model));
  if (auto it = root.find("added_tokens"); it != root.end() && !it->is_null()) {
    TIDAL_RETURN_IF_ERROR(parse_added_tokens(*it));
  }
  if (auto it = root.find("normalizer"); it != root.end() && !it->is_null()) {
    TIDAL_RETURN_IF_ERROR(parse_normalizer(*it, "normalizer"));
  }
  if (auto it = root.find("pre_tokenizer"); it != root.end() && !it->is_null()) {
    TIDAL_RETURN_IF_ERROR(parse_pre_tokenizer(*it, "pre_tokenizer"));
  }
  if (auto it = root.find("decoder"); it != root.end() && !it->is_null()) {
    TIDAL_RETURN_IF_ERROR(parse_decoder(*it, "decoder"));
  }
  // With no pre-tokenizer the whole text is one BPE word. When the normalizer turns spaces into
  // a mark (U+2581) and no token has the mark after another character, no merge can cross the
  // start of a marked word, so cutting there changes nothing and keeps BPE on short words.
  if (pre_tokenizers_.empty()) {
    for (const NormalizerStep& n : normalizers_) {
      if (n.kind == NormalizerStep::Kind::kReplace && n.from == " ") word_mark_ = n.to;
    }
    for (const auto& [token, id] : token_to_id_) {
      if (word_mark_.empty()) break;
      size_t lead = 0;
      while (token.compare(lead, word_mark_.size(), word_mark_) == 0) lead += word_mark_.size();
      if (token.find(word_mark_, lead) != std::string::npos) word_mark_.clear();
    }
  }
  // The post-processor only adds BOS (encode's add_bos) or nothing, so it is not read.

  auto find_first = [&](const std::string& configured,
                        std::initializer_list<const char*> names) -> int32_t {
    if (!configured.empty() && token_to_id(configured) >= 0) return token_to_id(configured);
    for (const char* name : names) {
      if (token_to_id(name) >= 0) return token_to_id(name);
    }
    return -1;
  };
  bos_id_ = find_first(bos_token, {"<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>"});
  eos_id_ = find_first(eos_token, {"<|end_of_text|>", "</s>", "<eos>", "<|endoftext|>"});
  return ok_status();
}

Status HfTokenizer::parse_model(const json& model) {
  if (!model.is_object()) {
    return invalid_argument(std::string("model must be an object, not ") + type_name(model));
  }
  std::string type = "BPE";  // older files may leave the type out
  TIDAL_RETURN_IF_ERROR(get_string(model, "type", "model", &type));
  if (type != "BPE") {
    return invalid_argument("unsupported model type \"" + type + "\" (only BPE is supported)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    std::string value;
    TIDAL_RETURN_IF_ERROR(get_string(model, key, "model", &value));
    if (!value.empty()) return invalid_argument(std::string("unsupported model.") + key);
  }
  TIDAL_RETURN_IF_ERROR(get_bool(model, "byte_fallback", "model", &byte_fallback_));
  TIDAL_RETURN_IF_ERROR(get_bool(model, "fuse_unk", "model", &fuse_unk_));
  TIDAL_RETURN_IF_ERROR(get_bool(model, "ignore_merges", "model", &ignore_merges_));

  auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object()) {
    return invalid_argument("model.vocab must be an object of token -> id");
  }
  if (vocab->empty()) return invalid_argument("model.vocab is empty");
  // Ids must be dense enough that id_to_token_ stays the size of the vocabulary: a corrupt id
  // of 2^31 must not allocate gigabytes.
  const size_t id_limit = 2 * vocab->size() + 4096;
  token_to_id_.reserve(vocab->size() + 512);
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    const json& v = it.value();
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || uint64_t(v.get<int64_t>()) >= id_limit) {
      return invalid_argument("model.vocab[\"" + printable(it.key(), 40) + "\"]: bad id " +
                              short_dump(v));
    }
    const auto id = int32_t(v.get<int64_t>());
    // Two tokens with one id: which one decoding gives would depend on the order of the file.
    if (const std::string* other = token_at(id)) {
      return invalid_argument("model.vocab: id " + std::to_string(id) + " is given to both \"" +
                              printable(*other, 40) + "\" and \"" + printable(it.key(), 40) + "\"");
    }
    token_to_id_[it.key()] = id;
    if (size_t(id) >= id_to_token_.size()) id_to_token_.resize(size_t(id) + 1);
    id_to_token_[id] = it.key();
  }

  std::string unk;
  TIDAL_RETURN_IF_ERROR(get_string(model, "unk_token", "model", &unk));
  if (!unk.empty()) {
    auto it = token_to_id_.find(unk);
    if (it == token_to_id_.end()) {
      return invalid_argument("model.unk_token \"" + unk + "\" is not in the vocabulary");
    }
    unk_id_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = token_to_id_.find(name);
    byte_ids_[b] = it == token_to_id_.end() ? -1 : it->second;
  }

  auto merges = model.find("merges");
  if (merges == model.end() || !merges->is_array()) {
    return invalid_argument("model.merges must be a list");
  }
  merges_.reserve(merges->size());
  std::string left, right;
  for (size_t rank = 0; rank < merges->size(); ++rank) {
    const json& m = (*merges)[rank];
    const std::string where = "model.merges[" + std::to_string(rank) + "]";
    if (m.is_string()) {  // "a b"
      const std::string& s = m.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return invalid_argument(where + " is not two tokens \"a b\": " + short_dump(m));
      }
      left.assign(s, 0, space);
      right.assign(s, space + 1, std::string::npos);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      return invalid_argument(where + " is neither \"a b\" nor [\"a\", \"b\"]: " + short_dump(m));
    }
    auto l = token_to_id_.find(left);
    auto r = token_to_id_.find(right);
    auto merged = token_to_id_.find(left + right);
    if (l == token_to_id_.end() || r == token_to_id_.end() || merged == token_to_id_.end()) {
      return invalid_argument(where + " uses a token not in the vocabulary: " + short_dump(m));
    }
    const uint64_t key = (uint64_t(uint32_t(l->second)) << 32) | uint32_t(r->second);
    merges_.emplace(key, std::make_pair(int32_t(rank), merged->second));
  }
  return ok_status();
}

Status HfTokenizer::parse_added_tokens(const json& added) {
  if (!added.is_array()) return invalid_argument("added_tokens must be a list");
  const size_t vocab_ids = id_to_token_.size();
  const size_t id_limit = 2 * vocab_ids + 2 * added.size() + 4096;
  for (size_t i = 0; i < added.size(); ++i) {
    const json& t = added[i];
    const std::string where = "added_tokens[" + std::to_string(i) + "]";
    if (!t.is_object()) return invalid_argument(where + " must be an object");
    AddedToken token;
    TIDAL_RETURN_IF_ERROR(get_string(t, "content", where, &token.content));
    if (token.content.empty()) return invalid_argument(where + ".content is missing or empty");
    const std::string named = where + " \"" + printable(token.content, 40) + "\"";
    auto id = t.find("id");
    if (id == t.end() || id->is_null()) return invalid_argument(named + ": id is missing");
    if (!id->is_number_integer()) {
      return invalid_argument(named + ": id must be an integer, not " + short_dump(*id));
    }
    // Unused ids below the limit are allowed (transformers allows them; some tokenizers reserve
    // a block), but an id far past the vocabulary is a corrupt file, not a reason to allocate.
    if (id->get<int64_t>() < 0 || uint64_t(id->get<int64_t>()) >= id_limit) {
      return invalid_argument(named + ": id " + short_dump(*id) + " is out of range (model.vocab " +
                              "ends at id " + std::to_string(vocab_ids - 1) +
                              "; added tokens may use ids up to " + std::to_string(id_limit - 1) +
                              ")");
    }
    token.id = int32_t(id->get<int64_t>());
    // The same token at the same id (Llama-2 files list <unk>, <s>, </s> in both places) is fine;
    // a different one would make that id decode to one token and the other undecodable.
    if (const std::string* other = token_at(token.id);
        other != nullptr && *other != token.content) {
      return invalid_argument(named + ": id " + std::to_string(token.id) +
                              " is already taken by \"" + printable(*other, 40) + "\"");
    }
    TIDAL_RETURN_IF_ERROR(get_bool(t, "special", where, &token.special));
    TIDAL_RETURN_IF_ERROR(get_bool(t, "lstrip", where, &token.lstrip));
    TIDAL_RETURN_IF_ERROR(get_bool(t, "rstrip", where, &token.rstrip));
    TIDAL_RETURN_IF_ERROR(get_bool(t, "single_word", where, &token.single_word));
    // "normalized": true tokens are matched on the raw text too; no supported file has one.
    token_to_id_[token.content] = token.id;
    if (size_t(token.id) >= id_to_token_.size()) id_to_token_.resize(size_t(token.id) + 1);
    id_to_token_[token.id] = token.content;
    added_.push_back(std::move(token));
  }
  special_.assign(id_to_token_.size(), false);
  for (size_t i = 0; i < added_.size(); ++i) {
    if (added_[i].special) special_[added_[i].id] = true;
    added_by_first_byte_[static_cast<unsigned char>(added_[i].content[0])].push_back(int(i));
  }
  // Longest first, so that a match is the leftmost-longest one as in HF's Aho-Corasick.
  for (auto& list : added_by_first_byte_) {
    std::stable_sort(list.begin(), list.end(), [&](int a, int b) {
      return added_[a].content.size() > added_[b].content.size();
    });
  }
  return ok_status();
}

Status HfTokenizer::parse_normalizer(const json& n, const std::string& where) {
  std::string type;
  TIDAL_RETURN_IF_ERROR(get_type(n, where, &type));
  if (type == "Sequence") {
    auto list = n.find("normalizers");
    if (list == n.end() || !list->is_array()) {
      return invalid_argument(where + ".normalizers must be a list");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      TIDAL_RETURN_IF_ERROR(
          parse_normalizer((*list)[i], where + ".normalizers[" + std::to_string(i) + "]"));
    }
  } else if (type == "Prepend") {
    NormalizerStep step{NormalizerStep::Kind::kPrepend, "", ""};
    TIDAL_RETURN_IF_ERROR(get_string(n, "prepend", where, &step.to));
    normalizers_.push_back(std::move(step));
  } else if (type == "Replace") {
    NormalizerStep step{NormalizerStep::Kind::kReplace, "", ""};
    bool is_regex = false;
    TIDAL_RETURN_IF_ERROR(get_pattern(n, where, &step.from, &is_regex));
    if (is_regex) return invalid_argument(where + ": unsupported Replace with a Regex pattern");
    TIDAL_RETURN_IF_ERROR(get_string(n, "content", where, &step.to));
    normalizers_.push_back(std::move(step));
  } else {
    return invalid_argument(where + ": unsupported normalizer type \"" + type + "\"");
  }
  return ok_status();
}

Status parse_metaspace(const json& p, const std::string& where, std::string* replacement,
                       bool* prepend, bool* first_only) {
  *replacement = "\xE2\x96\x81";  // U+2581
  TIDAL_RETURN_IF_ERROR(get_string(p, "replacement", where, replacement));
  if (replacement->empty()) return invalid_argument(where + ".replacement is empty");
  *prepend = true;
  TIDAL_RETURN_IF_ERROR(get_bool(p, "add_prefix_space", where, prepend));
  std::string scheme;
  TIDAL_RETURN_IF_ERROR(get_string(p, "prepend_scheme", where, &scheme));
  if (scheme == "always") {
    *prepend = true;
  } else if (scheme == "never") {
    *prepend = false;
  } else if (scheme == "first") {
    *prepend = true;
    *first_only = true;
  } else if (!scheme.empty()) {
    return invalid_argument(where + ": unsupported prepend_scheme \"" + scheme + "\"");
  }
  return ok_status();
}

Status HfTokenizer::parse_pre_tokenizer(const json& p, const std::string& where) {
  std::string type;
  TIDAL_RETURN_IF_ERROR(get_type(p, where, &type));
  if (type == "Sequence") {
    auto list = p.find("pretokenizers");
    if (list == p.end() || !list->is_array()) {
      return invalid_argument(where + ".pretokenizers must be a list");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      TIDAL_RETURN_IF_ERROR(
          parse_pre_tokenizer((*list)[i], where + ".pretokenizers[" + std::to_string(i) + "]"));
    }
  } else if (type == "Split") {
    PreTokenizerStep step;
    step.kind = PreTokenizerStep::Kind::kSplit;
    std::string pattern;
    bool is_regex = false;
    TIDAL_RETURN_IF_ERROR(get_pattern(p, where, &pattern, &is_regex));
    std::string behavior = "Isolated";
    TIDAL_RETURN_IF_ERROR(get_string(p, "behavior", where, &behavior));
    if (behavior != "Isolated" && behavior != "Removed") {
      return invalid_argument(where + ": unsupported Split behavior \"" + behavior + "\"");
    }
    step.remove_matches = behavior == "Removed";
    bool invert = false;
    TIDAL_RETURN_IF_ERROR(get_bool(p, "invert", where, &invert));
    if (invert) return invalid_argument(where + ": unsupported Split with invert");
    step.regex = std::make_shared<Regex>();
    TIDAL_RETURN_IF_ERROR(step.regex->compile(pattern, !is_regex, where));
    pre_tokenizers_.push_back(std::move(step));
  } else if (type == "ByteLevel") {
    PreTokenizerStep step;
    step.kind = PreTokenizerStep::Kind::kByteLevel;
    bool use_regex = true;
    TIDAL_RETURN_IF_ERROR(get_bool(p, "use_regex", where, &use_regex));
    TIDAL_RETURN_IF_ERROR(get_bool(p, "add_prefix_space", where, &step.add_prefix_space));
    if (use_regex) {
      step.regex = std::make_shared<Regex>();
      TIDAL_RETURN_IF_ERROR(step.regex->compile(kGpt2Regex, false, where));
    }
    pre_tokenizers_.push_back(std::move(step));
  } else if (type == "Metaspace") {
    PreTokenizerStep step;
    step.kind = PreTokenizerStep::Kind::kMetaspace;
    TIDAL_RETURN_IF_ERROR(parse_metaspace(p, where, &step.replacement, &step.add_prefix_space,
                                          &step.prepend_first_only));
    TIDAL_RETURN_IF_ERROR(get_bool(p, "split", where, &step.split));
    pre_tokenizers_.push_back(std::move(step));
  } else {
    return invalid_argument(where + ": unsupported pre_tokenizer type \"" + type + "\"");
  }
  return ok_status();
}

Status HfTokenizer::parse_decoder(const json& d, const std::string& where) {
  std::string type;
  TIDAL_RETURN_IF_ERROR(get_type(d, where, &type));
  DecoderStep step;
  if (type == "Sequence") {
    auto list = d.find("decoders");
    if (list == d.end() || !list->is_array()) {
      return invalid_argument(where + ".decoders must be a list");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      TIDAL_RETURN_IF_ERROR(
          parse_decoder((*list)[i], where + ".decoders[" + std::to_string(i) + "]"));
    }
    return ok_status();
  } else if (type == "ByteLevel") {
    step.kind = DecoderStep::Kind::kByteLevel;
  } else if (type == "Replace") {
    step.kind = DecoderStep::Kind::kReplace;
    bool is_regex = false;
    TIDAL_RETURN_IF_ERROR(get_pattern(d, where, &step.from, &is_regex));
    if (is_regex) return invalid_argument(where + ": unsupported Replace with a Regex pattern");
    TIDAL_RETURN_IF_ERROR(get_string(d, "content", where, &step.to));
  } else if (type == "ByteFallback") {
    step.kind = DecoderStep::Kind::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = DecoderStep::Kind::kFuse;
  } else if (type == "Strip") {
    step.kind = DecoderStep::Kind::kStrip;
    step.from = " ";
    TIDAL_RETURN_IF_ERROR(get_string(d, "content", where, &step.from));
    if (step.from.empty()) return invalid_argument(where + ".content is empty");
    TIDAL_RETURN_IF_ERROR(get_small_int(d, "start", where, &step.start));
    TIDAL_RETURN_IF_ERROR(get_small_int(d, "stop", where, &step.stop));
  } else if (type == "Metaspace") {
    step.kind = DecoderStep::Kind::kMetaspace;
    bool first_only = false;
    TIDAL_RETURN_IF_ERROR(parse_metaspace(d, where, &step.from, &step.prepend, &first_only));
  } else {
    return invalid_argument(where + ": unsupported decoder type \"" + type + "\"");
  }
  decoders_.push_back(std::move(step));
  return ok_status();
}

// ---- Encoding -------------------------------------------------------------------------------

bool HfTokenizer::next_added(std::string_view text, size_t from, size_t* begin, size_t* end,
                             int32_t* id) const {
  if (added_.empty()) return false;
  for (size_t pos = from; pos < text.size(); ++pos) {
    for (int index : added_by_first_byte_[static_cast<unsigned char>(text[pos])]) {
      const AddedToken& t = added_[index];
      if (text.compare(pos, t.content.size(), t.content) != 0) continue;
      size_t b = pos, e = pos + t.content.size();
      if (t.single_word &&
          ((b > 0 && is_word_char(text[b - 1])) || (e < text.size() && is_word_char(text[e])))) {
        continue;
      }
      if (t.lstrip) {
        while (b > from && is_ascii_space(text[b - 1])) --b;
      }
      if (t.rstrip) {
        while (e < text.size() && is_ascii_space(text[e])) ++e;
      }
      *begin = b;
      *end = e;
      *id = t.id;
      return true;
    }
  }
  return false;
}

Status HfTokenizer::encode(std::string_view text, bool add_bos, std::vector<int32_t>* ids) const {
  ids->clear();
  // Rust strings are UTF-8 by construction; we check once so that PCRE2 may skip its checks.
  if (!is_valid_utf8(text)) return invalid_argument("encode: the text is not valid UTF-8");
  if (add_bos && bos_id_ >= 0) ids->push_back(bos_id_);
  size_t pos = 0;
  bool first = true;
  while (pos < text.size()) {
    size_t begin = text.size(), end = text.size();
    int32_t id = -1;
    const bool found = next_added(text, pos, &begin, &end, &id);
    if (begin > pos) {
      TIDAL_RETURN_IF_ERROR(encode_segment(text.substr(pos, begin - pos), first, ids));
    }
    first = false;
    if (!found) break;
    ids->push_back(id);
    pos = end;
  }
  return ok_status();
}

Status HfTokenizer::encode_segment(std::string_view segment, bool first,
                                   std::vector<int32_t>* ids) const {
  std::string normalized(segment);
  for (const NormalizerStep& n : normalizers_) {
    if (n.kind == NormalizerStep::Kind::kPrepend) {
      if (!normalized.empty()) normalized.insert(0, n.to);
    } else {
      replace_all(&normalized, n.from, n.to);
    }
  }
  // Pieces are kept as owned strings: ByteLevel rewrites them.
  std::vector<std::string> pieces;
  if (!word_mark_.empty()) {
    // No pre-tokenizer: cut before each word mark that follows another character (see
    // word_mark_), so that BPE runs on words, which are cached, instead of the whole text.
    size_t start = 0;
    for (size_t hit = normalized.find(word_mark_, 1); hit != std::string::npos;
         hit = normalized.find(word_mark_, hit + word_mark_.size())) {
      if (hit >= start + word_mark_.size() &&
          normalized.compare(hit - word_mark_.size(), word_mark_.size(), word_mark_) == 0) {
        continue;  // inside a run of marks, which pieces such as "▁▁" may join
      }
      if (hit > start) pieces.push_back(normalized.substr(start, hit - start));
      start = hit;
    }
    pieces.push_back(normalized.substr(start));
  } else {
    pieces.push_back(std::move(normalized));
  }
  std::vector<std::pair<size_t, size_t>> spans;
  for (const PreTokenizerStep& p : pre_tokenizers_) {
    std::vector<std::string> next;
    next.reserve(pieces.size());
    for (std::string& piece : pieces) {
      if (p.kind == PreTokenizerStep::Kind::kMetaspace) {
        replace_all(&piece, " ", p.replacement);
        const bool prepend = p.add_prefix_space && (!p.prepend_first_only || first);
        if (prepend && piece.compare(0, p.replacement.size(), p.replacement) != 0) {
          piece.insert(0, p.replacement);
        }
        if (!p.split) {
          next.push_back(std::move(piece));
          continue;
        }
        // Split before each replacement character, which stays with the word after it.
        size_t start = 0;
        for (size_t hit = piece.find(p.replacement, 1); hit != std::string::npos;
             hit = piece.find(p.replacement, hit + 1)) {
          if (hit > start) next.push_back(piece.substr(start, hit - start));
          start = hit;
        }
        if (start < piece.size()) next.push_back(piece.substr(start));
        continue;
      }
      if (p.kind == PreTokenizerStep::Kind::kByteLevel && p.add_prefix_space && !piece.empty() &&
          piece[0] != ' ') {
        piece.insert(0, " ");
      }
      std::vector<std::string> split;
      if (p.regex) {
        spans.clear();
        TIDAL_RETURN_IF_ERROR(p.regex->find_all(piece, &spans));
        size_t last = 0;
        for (const auto& [b, e] : spans) {
          if (b > last) split.push_back(piece.substr(last, b - last));
          if (!p.remove_matches) split.push_back(piece.substr(b, e - b));
          last = e;
        }
        if (last < piece.size()) split.push_back(piece.substr(last));
      } else {
        split.push_back(std::move(piece));
      }
      if (p.kind == PreTokenizerStep::Kind::kByteLevel) {
        const ByteAlphabet& alphabet = byte_alphabet();
        for (std::string& s : split) {
          std::string mapped;
          mapped.reserve(s.size() * 2);
          for (char c : s) mapped += alphabet.byte_to_utf8[static_cast<unsigned char>(c)];
          s = std::move(mapped);
        }
      }
      for (std::string& s : split) next.push_back(std::move(s));
    }
    pieces = std::move(next);
  }
  for (const std::string& piece : pieces) {
    if (!piece.empty()) encode_word(piece, ids);
  }
  return ok_status();
}

void HfTokenizer::encode_word(std::string_view word, std::vector<int32_t>* ids) const {
  if (ignore_merges_) {
    auto it = token_to_id_.find(std::string(word));
    if (it != token_to_id_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  if (word.size() > kMaxCachedWordBytes) {
    bpe(word, ids);
    return;
  }
  std::string key(word);
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> word_ids;
  bpe(word, &word_ids);
  ids->insert(ids->end(), word_ids.begin(), word_ids.end());
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() >= kMaxCacheEntries) cache_.clear();
  cache_.emplace(std::move(key), std::move(word_ids));
}

// BPE on one word: start from characters (or byte-fallback bytes, or unk), then repeatedly apply
// the lowest-ranked merge present, leftmost first, as HF's Word::merge_all does.
void HfTokenizer::bpe(std::string_view word, std::vector<int32_t>* ids) const {
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // linked list over live symbols; -1 at the ends
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto push = [&](int32_t id) { symbols.push_back({id, int32_t(symbols.size()) - 1, -1}); };
  std::string ch;
  for (size_t i = 0; i < word.size();) {
    const size_t n = std::min(char_len(word, i), word.size() - i);
    ch.assign(word.data() + i, n);
    i += n;
    if (auto it = token_to_id_.find(ch); it != token_to_id_.end()) {
      push(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char c : ch) all = all && byte_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        for (char c : ch) push(byte_ids_[static_cast<unsigned char>(c)]);
        continue;
      }
    }
    if (unk_id_ >= 0) {
      if (fuse_unk_ && !symbols.empty() && symbols.back().id == unk_id_) continue;
      push(unk_id_);
    }
    // With no unk token, HF drops the character; so do we.
  }
  for (size_t i = 0; i + 1 < symbols.size(); ++i) symbols[i].next = int32_t(i + 1);

  struct Candidate {
    int32_t rank, pos, left, right, merged;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto consider = [&](int32_t pos) {
    if (pos < 0 || symbols[pos].next < 0) return;
    const int32_t left = symbols[pos].id, right = symbols[symbols[pos].next].id;
    auto it = merges_.find((uint64_t(uint32_t(left)) << 32) | uint32_t(right));
    if (it != merges_.end()) queue.push({it->second.first, pos, left, right, it->second.second});
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) consider(int32_t(i));
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& s = symbols[c.pos];
    // Stale entries (a neighbour changed since the push) are recognised by their ids; a pair
    // with the same ids at the same place is the same merge, so applying it is still right.
    if (s.id != c.left || s.next < 0 || symbols[s.next].id != c.right) continue;
    const int32_t gone = s.next;
    s.id = c.merged;
    s.next = symbols[gone].next;
    if (s.next >= 0) symbols[s.next].prev = c.pos;
    symbols[gone].id = -1;
    consider(s.prev);
    consider(c.pos);
  }
  for (int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) {
    ids->push_back(symbols[i].id);
  }
}

// ---- Decoding -------------------------------------------------------------------------------

Status HfTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special,
                           std::string* text) const {
  text->clear();
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= vocab_size()) {
      return out_of_range("decode: id " + std::to_string(id) + " at position " + std::to_string(i) +
                          " is outside the vocabulary [0, " + std::to_string(vocab_size()) + ")");
    }
    if (skip_special && is_special(id)) continue;
    tokens.push_back(id_to_token_[id]);
  }
  for (const DecoderStep& d : decoders_) {
    switch (d.kind) {
      case DecoderStep::Kind::kByteLevel: {
        // A token whose characters are all in the byte alphabet becomes those bytes; any other
        // (an added token such as "<|eot_id|>" in non-alphabet text) is kept as is.
        const ByteAlphabet& alphabet = byte_alphabet();
        std::string bytes;
        for (const std::string& t : tokens) {
          const size_t mark = bytes.size();
          bool mapped = true;
          for (size_t i = 0; i < t.size() && mapped;) {
            const size_t n = valid_utf8_at(t, i);
            uint32_t cp = 0x10000;
            if (n == 1) cp = static_cast<unsigned char>(t[i]);
            if (n == 2) {
              cp = ((uint32_t(static_cast<unsigned char>(t[i])) & 0x1F) << 6) |
                   (uint32_t(static_cast<unsigned char>(t[i + 1])) & 0x3F);
            }
            if (cp < alphabet.cp_to_byte.size() && alphabet.cp_to_byte[cp] >= 0) {
              bytes.push_back(char(alphabet.cp_to_byte[cp]));
              i += n;
            } else {
              mapped = false;
            }
          }
          if (!mapped) {
            bytes.resize(mark);
            bytes += t;
          }
        }
        tokens.assign(1, to_valid_utf8(bytes));
        break;
      }
      case DecoderStep::Kind::kReplace:
        for (std::string& t : tokens) replace_all(&t, d.from, d.to);
        break;
      case DecoderStep::Kind::kByteFallback: {
        // Runs of <0xNN> tokens become their bytes when those are valid UTF-8, else one U+FFFD
        // per byte (HF's rule, not from_utf8_lossy's).
        std::vector<std::string> out;
        out.reserve(tokens.size());
        std::string run;
        size_t run_len = 0;
        auto flush = [&]() {
          if (run_len == 0) return;
          if (is_valid_utf8(run)) {
            out.push_back(run);
          } else {
            for (size_t k = 0; k < run_len; ++k) out.emplace_back(kReplacementChar);
          }
          run.clear();
          run_len = 0;
        };
        for (std::string& t : tokens) {
          unsigned value = 0;
          if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
              std::isxdigit(static_cast<unsigned char>(t[3])) &&
              std::isxdigit(static_cast<unsigned char>(t[4])) &&
              std::sscanf(t.c_str() + 3, "%2x", &value) == 1) {
            run.push_back(char(value));
            ++run_len;
            continue;
          }
          flush();
          out.push_back(std::move(t));
        }
        flush();
        tokens = std::move(out);
        break;
      }
      case DecoderStep::Kind::kFuse: {
        std::string all;
        size_t total = 0;
        for (const std::string& t : tokens) total += t.size();
        all.reserve(total);
        for (const std::string& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case DecoderStep::Kind::kStrip:
        for (std::string& t : tokens) {
          size_t begin = 0, end = t.size();
          for (int k = 0; k < d.start && t.compare(begin, d.from.size(), d.from) == 0 &&
                          begin + d.from.size() <= end;
               ++k) {
            begin += d.from.size();
          }
          for (int k = 0; k < d.stop && end >= begin + d.from.size() &&
                          t.compare(end - d.from.size(), d.from.size(), d.from) == 0;
               ++k) {
            end -= d.from.size();
          }
          if (end < t.size()) t.erase(end);
          if (begin > 0) t.erase(0, begin);
        }
        break;
      case DecoderStep::Kind::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          replace_all(&tokens[i], d.from, " ");
          if (i == 0 && d.prepend && !tokens[i].empty() && tokens[i][0] == ' ') {
            tokens[i].erase(0, 1);
          }
        }
        break;
    }
  }
  if (tokens.size() == 1) {
    *text = std::move(tokens[0]);
  } else {
    size_t total = 0;
    for (const std::string& t : tokens) total += t.size();
    text->reserve(total);
    for (const std::string& t : tokens) *text += t;
  }
  if (!is_valid_utf8(*text)) *text = to_valid_utf8(*text);
  return ok_status();
}

}  // namespace

Status load_hf_tokenizer(std::string_view json_text, const std::string& origin,
                         const std::string& bos_token, const std::string& eos_token,
                         std::unique_ptr<Tokenizer>* out) {
  // nlohmann reports type errors by exception; none may leave the library, and every field is
  // type-checked before use anyway, so this is a backstop.
  try {
    const json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
    if (root.is_discarded()) {
      // Parse again with exceptions for the position and reason of the syntax error.
      try {
        const json again = json::parse(json_text);
      } catch (const json::exception& e) {
        return invalid_argument(origin + ": not valid JSON: " + e.what());
      }
      return invalid_argument(origin + ": not valid JSON");
    }
    auto tokenizer = std::make_unique<HfTokenizer>();
    Status status = tokenizer->parse(root, bos_token, eos_token);
    if (!status.ok()) return status.with_context(origin);
    *out = std::move(tokenizer);
    return ok_status();
  } catch (const std::bad_alloc&) {
    return out_of_memory(origin + ": out of memory while loading the tokenizer");
  } catch (const std::exception& e) {
    return invalid_argument(origin + ": " + e.what());
  }
}

}  // namespace tidal::model
