// SPDX-License-Identifier: Apache-2.0
// The SentencePiece tokenizer.model implementation of Tokenizer, through libsentencepiece (which
// does the normalization, the BPE and the byte fallback itself).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "model/tokenizer.h"
#include "runtime/status.h"

namespace tidal::model {

// Loads a serialized SentencePiece ModelProto. `origin` names the file in error messages.
// `bos_token` / `eos_token` (from tokenizer_config.json) override the model's BOS/EOS when they
// name a piece; empty keeps the model's own.
Status load_sentencepiece_tokenizer(std::string_view proto, const std::string& origin,
                                    const std::string& bos_token, const std::string& eos_token,
                                    std::unique_ptr<Tokenizer>* out);

}  // namespace tidal::model
