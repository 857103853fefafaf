// SPDX-License-Identifier: Apache-2.0
// UTF-8 validation: the tokenizers' (model/tokenizer_text.h) and printable()'s (runtime/status.h).
#pragma once

#include <cstddef>
#include <string_view>

namespace tidal {

// Length of the valid UTF-8 sequence at s[i], or 0 when the bytes there are not one (overlong
// forms, surrogates and code points past U+10FFFF are not). With `incomplete`, reports whether
// the bytes are a valid but truncated prefix (end of input).
size_t valid_utf8_at(std::string_view s, size_t i, bool* incomplete = nullptr);

}  // namespace tidal
