// SPDX-License-Identifier: Apache-2.0
// Tokenizers: Hugging Face tokenizer.json (byte-level BPE as in Llama-3; SentencePiece-style BPE
// with byte fallback as in Llama-2 / stories260K) and SentencePiece tokenizer.model (through
// libsentencepiece). One interface; the implementation is picked from the file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/status.h"

namespace tidal::model {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Loads tokenizer.json or tokenizer.model (picked by content, not by name). Errors name the
  // file and the problem (unreadable, not JSON, unsupported model type, ...).
  static Status load(const std::string& path, std::unique_ptr<Tokenizer>* out);
  // Loads from a model directory: tokenizer.json if present, else tokenizer.model; also reads
  // tokenizer_config.json when present (bos/eos token names). kNotFound when it has neither.
  static Status load_from_dir(const std::string& dir, std::unique_ptr<Tokenizer>* out);

  // Text -> ids. Special tokens written in the text (e.g. "<|eot_id|>") are split out first and
  // encoded as their ids. With add_bos, the BOS id (when the tokenizer has one) comes first.
  virtual Status encode(std::string_view text, bool add_bos, std::vector<int32_t>* ids) const = 0;
  // Ids -> text, as the HF decoder chain does (byte fallback / byte-level bytes are joined
  // before UTF-8 decoding; invalid UTF-8 becomes U+FFFD). Special tokens are skipped when
  // skip_special is true. An id out of range is an error.
  virtual Status decode(const std::vector<int32_t>& ids, bool skip_special,
                        std::string* text) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 when none
  virtual int32_t eos_id() const = 0;  // -1 when none
  // The id of a token given its exact text (special or not); -1 when absent.
  virtual int32_t token_to_id(std::string_view token) const = 0;
  virtual bool is_special(int32_t id) const = 0;
};

// Streams decoded text as ids arrive: push() returns the text that became final with this id
// (a multi-byte character split across tokens comes out once complete). finish() flushes the
// rest. The text is what the ids say after `context` (the prompt): the output concatenated
// equals decode(context + ids) with decode(context) removed from its front. So a
// SentencePiece-style leading space, which decode() strips only at the start of a text, is kept
// whenever text precedes the token: after the prompt "Once upon", "▁a" streams as " a"; with no
// context (or only special tokens before) it streams as "a", exactly as decode(ids) reads.
// Decodes a window of the last few ids per push, so a long prompt or generation costs nothing
// extra (vLLM's incremental detokenization).
class StreamDecoder {
 public:
  StreamDecoder(const Tokenizer& tokenizer, bool skip_special,
                const std::vector<int32_t>& context = {});
  Status push(int32_t id, std::string* new_text);
  Status finish(std::string* new_text);

 private:
  // Text of ids_[begin, end), or an error for a bad id.
  Status decode_range(size_t begin, size_t end, std::string* text) const;

  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::vector<int32_t> ids_;  // the ids that carry text (skipped specials left out)
  size_t window_ = 0;         // decoding starts here: earlier text is final and emitted
  size_t read_ = 0;           // ids_[window_, read_) is context whose text is already out
  size_t emitted_ = 0;        // bytes of decode(ids_[window_, ...)) already returned (or context)
};

// One turn of a chat: role "system", "user" or "assistant", and its text.
struct ChatMessage {
  std::string role;
  std::string content;
};

// Llama-3 instruct chat format: <|begin_of_text|>, then per message
// <|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|> (content trimmed, as the
// template does), then <|start_header_id|>assistant<|end_header_id|>\n\n for the reply. The
// messages: at least one; roles system, user or assistant; a system message only first; the
// last one from the user. Fails (kInvalidArgument, naming the message: "messages[2].role: ...")
// on malformed messages, or when the tokenizer lacks those special tokens. `eos_ids` receives the
// ids that end an assistant turn (<|eot_id|>, and <|end_of_text|> when present).
Status apply_llama3_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                         std::vector<int32_t>* ids, std::vector<int32_t>* eos_ids);
// One user turn: apply_llama3_chat with {{"user", prompt}}.
Status apply_llama3_chat_template(const Tokenizer& tokenizer, std::string_view prompt,
                                  std::vector<int32_t>* ids, std::vector<int32_t>* eos_ids);

}  // namespace tidal::model
