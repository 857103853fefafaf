// SPDX-License-Identifier: Apache-2.0
// The Hugging Face tokenizer.json implementation of Tokenizer: BPE models, byte-level (Llama-3) or
// SentencePiece-style with byte fallback (Llama-2 layout), with the normalizers, pre-tokenizers
// and decoders those files use. Anything else is refused with a Status naming it.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "model/tokenizer.h"
#include "runtime/status.h"

namespace tidal::model {

// Parses the text of a tokenizer.json. `origin` names the file in error messages. `bos_token` and
// `eos_token` are the names from tokenizer_config.json; when empty (or absent from the vocabulary)
// BOS/EOS are found by well-known names ("<|begin_of_text|>", "<s>", ...).
Status load_hf_tokenizer(std::string_view json_text, const std::string& origin,
                         const std::string& bos_token, const std::string& eos_token,
                         std::unique_ptr<Tokenizer>* out);

}  // namespace tidal::model
