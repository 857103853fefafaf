// SPDX-License-Identifier: Apache-2.0
// SentencePiece tokenizer.model through libsentencepiece: control tokens written in the text are
// split out first (as transformers' LlamaTokenizer does), the library encodes the rest and decodes
// (dummy-prefix strip and byte fallback included).
#include "model/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <exception>
#include <new>
#include <utility>
#include <vector>

namespace tidal::model {
namespace {

Status from_sp(const sentencepiece::util::Status& s, const std::string& what) {
  if (s.ok()) return ok_status();
  return invalid_argument(what + ": " + s.ToString());
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  Status init(std::string_view proto, const std::string& bos_token,
              const std::string& eos_token) {
    TIDAL_RETURN_IF_ERROR(from_sp(sp_.LoadFromSerializedProto(proto),
                                  "not a SentencePiece model"));
    if (sp_.GetPieceSize() <= 0) return invalid_argument("the SentencePiece model is empty");
    bos_id_ = sp_.bos_id();
    eos_id_ = sp_.eos_id();
    if (!bos_token.empty() && token_to_id(bos_token) >= 0) bos_id_ = token_to_id(bos_token);
    if (!eos_token.empty() && token_to_id(eos_token) >= 0) eos_id_ = token_to_id(eos_token);
    for (int id = 0; id < sp_.GetPieceSize(); ++id) {
      if (sp_.IsControl(id) && !sp_.IdToPiece(id).empty()) {
        controls_.emplace_back(sp_.IdToPiece(id), id);
      }
    }
    // Longest first, so that the leftmost match is also the longest.
    std::stable_sort(controls_.begin(), controls_.end(),
                     [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
    return ok_status();
  }

  Status encode(std::string_view text, bool add_bos, std::vector<int32_t>* ids) const override {
    ids->clear();
    if (add_bos && bos_id_ >= 0) ids->push_back(bos_id_);
    std::vector<int> piece_ids;
    size_t pos = 0;
    while (pos <= text.size()) {
      // The earliest control token in the rest of the text (there are only a few).
      size_t hit = std::string_view::npos;
      int32_t hit_id = -1;
      size_t hit_len = 0;
      for (const auto& [piece, id] : controls_) {
        const size_t at = text.find(piece, pos);
        if (at < hit) {
          hit = at;
          hit_id = id;
          hit_len = piece.size();
        }
      }
      const size_t end = std::min(hit, text.size());
      if (end > pos) {
        piece_ids.clear();
        TIDAL_RETURN_IF_ERROR(
            from_sp(sp_.Encode(text.substr(pos, end - pos), &piece_ids), "encode"));
        ids->insert(ids->end(), piece_ids.begin(), piece_ids.end());
      }
      if (hit == std::string_view::npos) break;
      ids->push_back(hit_id);
      pos = hit + hit_len;
    }
    return ok_status();
  }

  Status decode(const std::vector<int32_t>& ids, bool skip_special,
                std::string* text) const override {
    text->clear();
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] >= vocab_size()) {
        return out_of_range("decode: id " + std::to_string(ids[i]) + " at position " +
                            std::to_string(i) + " is outside the vocabulary [0, " +
                            std::to_string(vocab_size()) + ")");
      }
    }
    const std::vector<int> piece_ids(ids.begin(), ids.end());
    if (skip_special) return from_sp(sp_.Decode(piece_ids, text), "decode");
    // The library drops control tokens; to show them, take its per-piece surfaces and put the
    // control pieces back in place.
    sentencepiece::ImmutableSentencePieceText spt;
    TIDAL_RETURN_IF_ERROR(from_sp(sp_.Decode(piece_ids, spt.mutable_proto()), "decode"));
    const size_t n = spt.pieces_size();
    for (size_t i = 0; i < n; ++i) {
      const auto piece = spt.pieces(int(i));
      if (sp_.IsControl(int(piece.id()))) {
        *text += piece.piece();
      } else {
        *text += piece.surface();
      }
    }
    return ok_status();
  }

  int32_t vocab_size() const override { return sp_.GetPieceSize(); }
  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  int32_t token_to_id(std::string_view token) const override {
    const int id = sp_.PieceToId(token);
    // PieceToId answers unk for any unknown piece.
    if (id < 0 || (sp_.IsUnknown(id) && sp_.IdToPiece(id) != token)) return -1;
    return id;
  }
  bool is_special(int32_t id) const override {
    return id >= 0 && id < vocab_size() && sp_.IsControl(id);
  }

 private:
  sentencepiece::SentencePieceProcessor sp_;
  std::vector<std::pair<std::string, int32_t>> controls_;  // piece text, id
  int32_t bos_id_ = -1, eos_id_ = -1;
};

}  // namespace

Status load_sentencepiece_tokenizer(std::string_view proto, const std::string& origin,
                                    const std::string& bos_token, const std::string& eos_token,
                                    std::unique_ptr<Tokenizer>* out) {
  try {
    auto tokenizer = std::make_unique<SentencePieceTokenizer>();
    Status status = tokenizer->init(proto, bos_token, eos_token);
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
