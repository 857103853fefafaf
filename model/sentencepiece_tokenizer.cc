// SPDX-License-Identifier: Apache-2.0
// SentencePiece tokenizer.model through libsentencepiece: control tokens written in the text are
// split out first (as transformers' LlamaTokenizer does), the library encodes the rest and decodes
// (dummy-prefix strip and byte fallback included).
#include "model/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
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

// ---- Why a file is not a ModelProto ---------------------------------------------------------
// libsentencepiece reports any protobuf failure as its own source line ("[model_proto->
// ParseFromArray(...)]"), which tells a user nothing. A walk over the protobuf framing (tags and
// lengths, https://protobuf.dev/programming-guides/encoding/) says where the bytes stop making
// sense, and whether the file simply ends too soon: the usual fault of a download cut short.

// A serialized ModelProto starts with its first piece: field 1, length-delimited.
constexpr unsigned char kPiecesTag = 0x0A;

std::string byte_hex(unsigned char b) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "0x%02x", b);
  return buf;
}

// Reads a varint at b[*at]; false when the bytes end first (or it runs past 10 bytes).
bool read_varint(std::string_view b, size_t* at, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 70 && *at < b.size(); shift += 7) {
    const auto byte = static_cast<unsigned char>(b[(*at)++]);
    *v |= uint64_t(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

// Walks the fields of the message in `b`. With `pieces` (the top level of a ModelProto), each
// field 1 is a SentencePiece message and is walked too. Returns "" when the framing holds, else
// what is wrong; *truncated tells whether it is that the bytes end too soon.
std::string framing_problem(std::string_view b, size_t file_size, bool pieces, bool* truncated) {
  *truncated = false;
  auto short_by = [&](size_t start, uint64_t need, size_t at) {
    *truncated = true;
    return "the field at byte " + std::to_string(start) + " needs " + std::to_string(need) +
           " bytes, only " + std::to_string(b.size() - at) + " remain in the " +
           std::to_string(file_size) + "-byte file";
  };
  // A varint that fails to end: cut off by the end of the bytes, or longer than 10 bytes.
  auto bad_varint = [&](const char* what, size_t start, size_t at) {
    *truncated = at >= b.size();
    return std::string("the ") + what + " of the field at byte " + std::to_string(start) +
           (*truncated ? " is cut off by the end of the file" : " is not a valid varint");
  };
  size_t at = 0;
  int piece = 0;
  while (at < b.size()) {
    const size_t start = at;
    uint64_t tag = 0, value = 0;
    if (!read_varint(b, &at, &tag)) return bad_varint("tag", start, at);
    if ((tag >> 3) == 0 || (tag & 7) == 3 || (tag & 7) == 4 || (tag & 7) > 5) {
      return "byte " + std::to_string(start) + " (" +
             byte_hex(static_cast<unsigned char>(b[start])) + ") is not a protobuf field tag";
    }
    switch (tag & 7) {
      case 0:  // varint
        if (!read_varint(b, &at, &value)) return bad_varint("value", start, at);
        break;
      case 1:  // fixed64
      case 5:  // fixed32
        value = (tag & 7) == 1 ? 8 : 4;
        if (value > b.size() - at) return short_by(start, value, at);
        at += size_t(value);
        break;
      case 2:  // length-delimited
        if (!read_varint(b, &at, &value)) return bad_varint("length", start, at);
        if (value > b.size() - at) return short_by(start, value, at);
        if (pieces && (tag >> 3) == 1) {
          bool inner_truncated = false;
          if (!framing_problem(b.substr(at, size_t(value)), file_size, false, &inner_truncated)
                   .empty()) {
            // The piece's own length holds, so its bytes are all there: damage, not a short file.
            return "piece " + std::to_string(piece) + " (the field at byte " +
                   std::to_string(start) + ") is damaged inside";
          }
          ++piece;
        }
        at += size_t(value);
        break;
    }
  }
  return "";
}

// The error for bytes that libsentencepiece refused with `sp_status`.
Status explain_load_failure(std::string_view proto, const sentencepiece::util::Status& sp_status) {
  bool truncated = false;
  const std::string problem = framing_problem(proto, proto.size(), true, &truncated);
  if (!problem.empty()) {
    return invalid_argument(std::string(truncated ? "truncated" : "corrupt") +
                            " SentencePiece model: " + problem);
  }
  const std::string what = sp_status.message();
  if (what.find("ParseFromArray") != std::string::npos) {
    return invalid_argument(
        "corrupt SentencePiece model: its fields are whole but do not parse as a ModelProto");
  }
  // The bytes parse; the model in them is unusable ("unk is not defined.").
  return invalid_argument("unusable SentencePiece model: " + printable(what));
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  Status init(std::string_view proto, const std::string& bos_token, const std::string& eos_token) {
    if (proto.empty() || static_cast<unsigned char>(proto[0]) != kPiecesTag) {
      return invalid_argument(
          "neither a tokenizer.json (JSON object) nor a SentencePiece tokenizer.model (which "
          "starts with byte " +
          byte_hex(kPiecesTag) + "; this file starts with " +
          (proto.empty() ? std::string("nothing")
                         : byte_hex(static_cast<unsigned char>(proto[0]))) +
          ")");
    }
    const sentencepiece::util::Status loaded = sp_.LoadFromSerializedProto(proto);
    if (!loaded.ok()) return explain_load_failure(proto, loaded);
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
    chunkable_ = probe_chunking();
    // Longest first, so that the leftmost match is also the longest.
    std::stable_sort(controls_.begin(), controls_.end(),
                     [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
    return ok_status();
  }

  Status encode(std::string_view text, bool add_bos, std::vector<int32_t>* ids) const override {
    ids->clear();
    if (add_bos && bos_id_ >= 0) ids->push_back(bos_id_);
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
      if (end > pos) TIDAL_RETURN_IF_ERROR(encode_segment(text.substr(pos, end - pos), ids));
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
    const bool any_control =
        std::any_of(piece_ids.begin(), piece_ids.end(), [&](int id) { return sp_.IsControl(id); });
    if (skip_special || !any_control) return decode_plain(piece_ids, text);
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
  // libsentencepiece's BPE is superlinear in the input (1.6 MB of KJV takes 3 s, 4.4 MB 14 s), so
  // a long segment is cut into ~64 KB chunks at "hard" boundaries: a space after a character
  // that is neither a space nor U+2581. When no piece has U+2581 after a non-U+2581 character,
  // no merge can span such a boundary, and dropping the space there lets the dummy prefix that
  // the library adds to each chunk stand in for it, so the ids are those of the whole segment.
  static constexpr size_t kChunkBytes = 4096;  // faster than 64 KB, and as fast as 1 KB
  // Decoding is superlinear too; it is cut before a word-initial piece (one starting with U+2581),
  // whose leading space the library strips at the start of each chunk and we put back.
  static constexpr size_t kChunkIds = 2048;

  static bool is_boundary(std::string_view s, size_t i) {
    if (s[i] != ' ' || i == 0 || i + 1 >= s.size() || s[i - 1] == ' ') return false;
    return !(i >= 3 && s.compare(i - 3, 3, "\xE2\x96\x81") == 0);
  }

  Status encode_chunk(std::string_view chunk, std::vector<int32_t>* ids) const {
    std::vector<int> piece_ids;
    TIDAL_RETURN_IF_ERROR(from_sp(sp_.Encode(chunk, &piece_ids), "encode"));
    ids->insert(ids->end(), piece_ids.begin(), piece_ids.end());
    return ok_status();
  }

  // `chunk_bytes` is the least chunk length (a parameter so that the probe can cut everywhere).
  Status encode_segment(std::string_view text, std::vector<int32_t>* ids,
                        size_t chunk_bytes = kChunkBytes) const {
    if (!chunkable_ && chunk_bytes == kChunkBytes) return encode_chunk(text, ids);
    size_t start = 0;
    while (true) {
      size_t cut = std::string_view::npos;
      if (text.size() - start > 2 * chunk_bytes) {
        for (size_t i = start + chunk_bytes; i + 1 < text.size(); ++i) {
          if (is_boundary(text, i)) {
            cut = i;
            break;
          }
        }
      }
      const size_t end = cut == std::string_view::npos ? text.size() : cut;
      TIDAL_RETURN_IF_ERROR(encode_chunk(text.substr(start, end - start), ids));
      if (cut == std::string_view::npos) return ok_status();
      start = cut + 1;  // the space is dropped: the chunk's dummy prefix stands for it
    }
  }

  Status decode_plain(const std::vector<int>& ids, std::string* text,
                      size_t chunk_ids = kChunkIds) const {
    text->clear();
    if ((!chunkable_ && chunk_ids == kChunkIds) || ids.size() <= 2 * chunk_ids) {
      return from_sp(sp_.Decode(ids, text), "decode");
    }
    // Cut only after the first word-initial piece: before it, the library would still strip
    // the leading space of a later piece.
    size_t first_word = 0;
    while (first_word < ids.size() && !starts_word_[ids[first_word]]) ++first_word;
    size_t start = 0;
    std::string part;
    while (start < ids.size()) {
      size_t cut = ids.size();
      if (ids.size() - start > 2 * chunk_ids) {
        for (size_t i = std::max(start + chunk_ids, first_word + 1); i < ids.size(); ++i) {
          if (starts_word_[ids[i]]) {
            cut = i;
            break;
          }
        }
      }
      const std::vector<int> chunk(ids.begin() + start, ids.begin() + cut);
      TIDAL_RETURN_IF_ERROR(from_sp(sp_.Decode(chunk, &part), "decode"));
      if (start > 0) text->push_back(' ');
      *text += part;
      start = cut;
    }
    return ok_status();
  }

  // Chunking is exact only for models like Llama-2's (dummy prefix on, extra whitespace kept,
  // no piece with U+2581 inside a word); the pieces are checked, then the behaviour on probes.
  bool probe_chunking() {
    const std::string_view space_mark = "\xE2\x96\x81";
    starts_word_.assign(sp_.GetPieceSize(), false);
    for (int id = 0; id < sp_.GetPieceSize(); ++id) {
      if (sp_.IsControl(id)) continue;
      starts_word_[id] = !sp_.IsUnknown(id) && !sp_.IsByte(id) && !sp_.IsUnused(id) &&
                         sp_.IdToPiece(id).compare(0, space_mark.size(), space_mark) == 0;
      const std::string& piece = sp_.IdToPiece(id);
      size_t lead = 0;
      while (piece.compare(lead, space_mark.size(), space_mark) == 0) lead += space_mark.size();
      if (piece.find(space_mark, lead) != std::string::npos) return false;
    }
    for (const char* probe : {"ab cd  ef\n gh  ", " Hello,  world.\t x \xE2\x96\x81 y  \n\n z",
                              "  leading and trailing   "}) {
      std::vector<int32_t> whole, cut;
      if (!encode_chunk(probe, &whole).ok() || !encode_segment(probe, &cut, 1).ok() ||
          whole != cut) {
        return false;
      }
      const std::vector<int> piece_ids(whole.begin(), whole.end());
      std::string text, chunked;
      if (!from_sp(sp_.Decode(piece_ids, &text), "").ok() ||
          !decode_plain(piece_ids, &chunked, 1).ok() || text != chunked) {
        return false;
      }
    }
    return true;
  }

  sentencepiece::SentencePieceProcessor sp_;
  bool chunkable_ = false;
  std::vector<bool> starts_word_;  // by id: a normal piece that begins with U+2581
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
