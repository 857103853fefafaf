// SPDX-License-Identifier: Apache-2.0
// Tokenizer loading (tokenizer.json vs tokenizer.model picked by content; tokenizer_config.json
// for BOS/EOS names), StreamDecoder, and the Llama-3 instruct chat template.
#include "model/tokenizer.h"

#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "model/hf_tokenizer.h"
#include "model/sentencepiece_tokenizer.h"
#include "runtime/file.h"

namespace tidal::model {
namespace {

using json = nlohmann::json;

// Far above any published tokenizer (Llama-3's tokenizer.json is 9 MB): a larger file is the
// wrong one (a checkpoint named by mistake), refused before it is read into memory.
constexpr uintmax_t kMaxTokenizerBytes = uintmax_t{256} << 20;

Status read_whole_file(const std::string& path, std::string* contents) {
  // file_size fails for a directory or a missing file: read_file names those.
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (!ec && size > kMaxTokenizerBytes) {
    return invalid_argument(path + ": " + std::to_string(size) +
                            " bytes is too large for a tokenizer (at most 256 MiB); is it the "
                            "right file?");
  }
  const Status st = read_file(path, contents);
  if (!st.ok()) return Status(st.code(), "cannot read tokenizer " + st.message());
  return ok_status();
}

Status load_with_names(const std::string& path, const std::string& bos_token,
                       const std::string& eos_token, std::unique_ptr<Tokenizer>* out) {
  std::string contents;
  TIDAL_RETURN_IF_ERROR(read_whole_file(path, &contents));
  // A tokenizer.json is a JSON object; a serialized ModelProto never starts with '{' (it would
  // be a deprecated protobuf group). Anything else that is text-like gets the JSON error, which
  // says more than protobuf's.
  size_t first = contents.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return invalid_argument(path + ": the file is empty");
  const char c = contents[first];
  if (c == '{' || c == '[' || c == '"') {
    const Status json_status = load_hf_tokenizer(contents, path, bos_token, eos_token, out);
    // A ModelProto starts with its first piece's tag (0x0a, a newline to the test above) and
    // that piece's length: a length of 34, 91 or 123 bytes reads as '"', '[' or '{'. Such a file
    // fails as JSON; it is taken as a SentencePiece model when it is one.
    if (!json_status.ok() && first == 1 && contents[0] == '\n') {
      std::unique_ptr<Tokenizer> sp;
      if (load_sentencepiece_tokenizer(contents, path, bos_token, eos_token, &sp).ok()) {
        *out = std::move(sp);
        return ok_status();
      }
    }
    return json_status;
  }
  // Its errors name the file and say what is wrong: not a ModelProto at all, cut short, damaged,
  // or a model libsentencepiece cannot use.
  return load_sentencepiece_tokenizer(contents, path, bos_token, eos_token, out);
}

// bos_token / eos_token in tokenizer_config.json are a string or {"content": "..."}.
std::string token_name(const json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto content = it->find("content");
    if (content != it->end() && content->is_string()) return content->get<std::string>();
  }
  return "";
}

// Lengths of the trailing U+FFFD characters of `s`: the decoders emit them for an incomplete
// UTF-8 sequence that the next token may complete.
size_t trailing_replacement_bytes(const std::string& s) {
  size_t n = 0;
  while (s.size() >= n + 3 && s.compare(s.size() - n - 3, 3, "\xEF\xBF\xBD") == 0) n += 3;
  return n;
}

std::string trim(std::string_view s) {
  const char* space = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(space);
  if (b == std::string_view::npos) return "";
  const size_t e = s.find_last_not_of(space);
  return std::string(s.substr(b, e - b + 1));
}

}  // namespace

Status Tokenizer::load(const std::string& path, std::unique_ptr<Tokenizer>* out) {
  return load_with_names(path, "", "", out);
}

Status Tokenizer::load_from_dir(const std::string& dir, std::unique_ptr<Tokenizer>* out) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path base(dir);
  std::string path;
  if (fs::exists(base / "tokenizer.json", ec)) {
    path = (base / "tokenizer.json").string();
  } else if (fs::exists(base / "tokenizer.model", ec)) {
    path = (base / "tokenizer.model").string();
  } else {
    return not_found("no tokenizer.json or tokenizer.model in '" + dir + "'");
  }
  std::string bos_token, eos_token;
  const fs::path config_path = base / "tokenizer_config.json";
  if (fs::exists(config_path, ec)) {
    std::string text;
    TIDAL_RETURN_IF_ERROR(read_whole_file(config_path.string(), &text));
    const json config = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object()) {
      return invalid_argument(config_path.string() + ": not a JSON object");
    }
    bos_token = token_name(config, "bos_token");
    eos_token = token_name(config, "eos_token");
  }
  return load_with_names(path, bos_token, eos_token, out);
}

namespace {

// Context ids kept before the stream: enough for a leading space and for a character whose
// bytes the last context tokens split (at most 4 byte tokens).
constexpr size_t kContextIds = 8;

}  // namespace

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special,
                             const std::vector<int32_t>& context)
    : tokenizer_(tokenizer), skip_special_(skip_special) {
  for (int32_t id : context) {
    if (!(skip_special_ && tokenizer_.is_special(id))) ids_.push_back(id);
  }
  if (ids_.size() > kContextIds) ids_.erase(ids_.begin(), ids_.end() - long(kContextIds));
  read_ = ids_.size();
  std::string text;
  // A bad context id only costs the leading-space rule: fall back to no context.
  if (!decode_range(0, read_, &text).ok()) {
    ids_.clear();
    read_ = 0;
    text.clear();
  }
  // The context's text is the prompt's, not ours; a trailing partial character in it is
  // completed (and emitted) by the ids that follow.
  emitted_ = text.size() - trailing_replacement_bytes(text);
}

Status StreamDecoder::decode_range(size_t begin, size_t end, std::string* text) const {
  return tokenizer_.decode(
      std::vector<int32_t>(ids_.begin() + long(begin), ids_.begin() + long(end)), skip_special_,
      text);
}

Status StreamDecoder::push(int32_t id, std::string* new_text) {
  new_text->clear();
  if (skip_special_ && tokenizer_.is_special(id)) return ok_status();  // no text, no context
  ids_.push_back(id);
  std::string all;
  Status status = decode_range(window_, ids_.size(), &all);
  if (!status.ok()) {
    ids_.pop_back();
    return status;
  }
  // Hold back a trailing U+FFFD: it may be half of a character still to come.
  const size_t stable = all.size() - trailing_replacement_bytes(all);
  if (stable > emitted_) {
    new_text->assign(all, emitted_, stable - emitted_);
    emitted_ = stable;
  }
  if (stable == all.size()) {
    // Everything is final: the next window starts at the ids before this push (they carry the
    // context a leading space needs), and what they decode to is already out.
    window_ = read_;
    read_ = ids_.size();
    std::string kept;
    TIDAL_RETURN_IF_ERROR(decode_range(window_, ids_.size(), &kept));
    emitted_ = kept.size();
  }
  return ok_status();
}

Status StreamDecoder::finish(std::string* new_text) {
  new_text->clear();
  std::string all;
  TIDAL_RETURN_IF_ERROR(decode_range(window_, ids_.size(), &all));
  if (all.size() > emitted_) new_text->assign(all, emitted_, std::string::npos);
  emitted_ = all.size();
  return ok_status();
}

namespace {

// The structure of a chat, checked before any tokenizer is needed.
Status check_chat_messages(const std::vector<ChatMessage>& messages) {
  if (messages.empty()) return invalid_argument("messages: a chat needs at least one message");
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string where = "messages[" + std::to_string(i) + "]";
    const std::string& role = messages[i].role;
    if (role != "system" && role != "user" && role != "assistant") {
      return invalid_argument(where + ".role: '" + printable(role, 40) +
                              "' is not system, user or assistant");
    }
    if (role == "system" && i > 0) {
      return invalid_argument(where + ".role: a system message may only come first");
    }
  }
  if (messages.back().role != "user") {
    return invalid_argument("messages[" + std::to_string(messages.size() - 1) +
                            "].role: the last message must be the user's (the reply is the "
                            "assistant's)");
  }
  return ok_status();
}

}  // namespace

Status apply_llama3_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                         std::vector<int32_t>* ids, std::vector<int32_t>* eos_ids) {
  TIDAL_RETURN_IF_ERROR(check_chat_messages(messages));
  for (const char* name :
       {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}) {
    if (tokenizer.token_to_id(name) < 0) {
      return invalid_argument(std::string("chat template: the tokenizer has no ") + name +
                              " token (not a Llama-3 instruct tokenizer)");
    }
  }
  // The special tokens are written as text: encode() splits them out, as transformers does when
  // it tokenizes the rendered template.
  std::string text;
  for (const ChatMessage& m : messages) {
    text +=
        "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + trim(m.content) + "<|eot_id|>";
  }
  text += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  std::vector<int32_t> body;
  TIDAL_RETURN_IF_ERROR(tokenizer.encode(text, /*add_bos=*/false, &body));
  ids->clear();
  eos_ids->clear();
  ids->push_back(tokenizer.token_to_id("<|begin_of_text|>"));
  ids->insert(ids->end(), body.begin(), body.end());
  eos_ids->push_back(tokenizer.token_to_id("<|eot_id|>"));
  const int32_t end_of_text = tokenizer.token_to_id("<|end_of_text|>");
  if (end_of_text >= 0) eos_ids->push_back(end_of_text);
  return ok_status();
}

Status apply_llama3_chat_template(const Tokenizer& tokenizer, std::string_view prompt,
                                  std::vector<int32_t>* ids, std::vector<int32_t>* eos_ids) {
  return apply_llama3_chat(tokenizer, {ChatMessage{"user", std::string(prompt)}}, ids, eos_ids);
}

}  // namespace tidal::model
