// SPDX-License-Identifier: Apache-2.0
// Seeded fuzzing of the safetensors and config.json parsers: thousands of corrupted inputs each
// (byte flips, truncations, wrong header lengths, mutated JSON text, type swaps, deleted keys,
// huge and negative numbers). Parsers must return a Status, never crash; what they accept must
// be safe to use. Run under ASan+UBSan in the sanitizer build.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/safetensors.h"

namespace tidal::model {
namespace {

using json = nlohmann::json;

constexpr int kIterations = 3000;  // per mutation kind

std::string with_length(const std::string& header, uint64_t n, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return out + header + data;
}

// A valid header and data section with a few tensors of the understood dtypes.
void base_safetensors(std::string* header, std::string* data) {
  *header = R"({"__metadata__":{"format":"pt"},)"
            R"("embed":{"dtype":"F32","shape":[4,3],"data_offsets":[0,48]},)"
            R"("norm":{"dtype":"BF16","shape":[3],"data_offsets":[48,54]},)"
            R"("proj":{"dtype":"F16","shape":[2,2],"data_offsets":[54,62]},)"
            R"("ids":{"dtype":"I64","shape":[1],"data_offsets":[62,70]},)"
            R"("mask":{"dtype":"BOOL","shape":[2],"data_offsets":[70,72]},)"
            R"("empty":{"dtype":"I32","shape":[0,5],"data_offsets":[72,72]}})";
  data->clear();
  for (int i = 0; i < 72; ++i) data->push_back(char(i * 37 + 11));
}

// How many fuzzed inputs the parser under test accepted: reported, so a mutation that only ever
// produces garbage shows up.
int g_accepted = 0;

// Parses `buf` from an exact-size heap copy (so ASan sees any overread); checks the invariants.
void check_safetensors(const std::string& buf) {
  const std::vector<uint8_t> bytes(buf.begin(), buf.end());
  const uint8_t* begin = bytes.data();
  std::vector<SafetensorsTensor> tensors;
  const Status s = parse_safetensors(begin, bytes.size(), "fuzz.safetensors", &tensors);
  if (!s.ok()) {
    ASSERT_FALSE(s.message().empty());
    ASSERT_EQ(s.message().find('\n'), std::string::npos) << s.message();
    return;
  }
  ++g_accepted;
  for (const SafetensorsTensor& t : tensors) {
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      ASSERT_GE(d, 0);
      ASSERT_TRUE(d == 0 || numel <= std::numeric_limits<uint64_t>::max() / uint64_t(d));
      numel *= uint64_t(d);
    }
    ASSERT_EQ(uint64_t(t.nbytes), numel * dtype_size(t.dtype)) << t.name;
    ASSERT_GE(t.data, begin + 8) << t.name;
    ASSERT_LE(t.nbytes, bytes.size()) << t.name;
    ASSERT_LE(t.data, begin + bytes.size() - t.nbytes) << t.name;
    // Touch every byte: any out-of-bounds view faults under ASan.
    unsigned sum = 0;
    for (size_t i = 0; i < t.nbytes; ++i) sum += t.data[i];
    (void)sum;
  }
}

const char* const kHugeValues[] = {"99999999999999999999999",
                                   "18446744073709551615",
                                   "9223372036854775807",
                                   "9223372036854775808",
                                   "-9223372036854775808",
                                   "-1",
                                   "-0",
                                   "1e308",
                                   "-1e308",
                                   "1e999",
                                   "3.5",
                                   "0",
                                   "null",
                                   "true",
                                   "\"x\"",
                                   "[]",
                                   "{}",
                                   "4294967296",
                                   "4611686018427387904"};

// One random textual mutation of JSON text.
std::string mutate_json_text(std::string text, std::mt19937& rng) {
  auto pick = [&](size_t n) { return n == 0 ? size_t(0) : size_t(rng() % n); };
  const int rounds = 1 + int(rng() % 3);
  for (int r = 0; r < rounds && !text.empty(); ++r) {
    switch (rng() % 7) {
      case 0: {  // change a digit
        std::vector<size_t> digits;
        for (size_t i = 0; i < text.size(); ++i) {
          if (text[i] >= '0' && text[i] <= '9') digits.push_back(i);
        }
        if (!digits.empty()) text[digits[pick(digits.size())]] = char('0' + rng() % 10);
        break;
      }
      case 1: {  // delete a quoted string (a key or a value) with what follows up to a ',' or '}'
        const size_t q = text.find('"', pick(text.size()));
        if (q == std::string::npos) break;
        const size_t q2 = text.find('"', q + 1);
        if (q2 == std::string::npos) break;
        size_t end = text.find_first_of(",}", q2 + 1);
        if (end == std::string::npos) end = text.size();
        text.erase(q, end - q + (end < text.size() && text[end] == ',' ? 1 : 0));
        break;
      }
      case 2: {  // remove a bracket
        std::vector<size_t> at;
        for (size_t i = 0; i < text.size(); ++i) {
          if (std::strchr("[]{}", text[i]) != nullptr) at.push_back(i);
        }
        if (!at.empty()) text.erase(at[pick(at.size())], 1);
        break;
      }
      case 3:  // replace a number with a huge, negative, fractional or wrong-typed value
      case 4: {
        std::vector<size_t> starts;
        for (size_t i = 0; i < text.size(); ++i) {
          const bool digit = (text[i] >= '0' && text[i] <= '9') || text[i] == '-';
          const bool prev_digit = i > 0 && ((text[i - 1] >= '0' && text[i - 1] <= '9') ||
                                            text[i - 1] == '.' || text[i - 1] == '-');
          if (digit && !prev_digit) starts.push_back(i);
        }
        if (starts.empty()) break;
        const size_t s = starts[pick(starts.size())];
        size_t e = s;
        while (e < text.size() && std::strchr("0123456789.-+eE", text[e]) != nullptr) ++e;
        text.replace(s, e - s, kHugeValues[pick(std::size(kHugeValues))]);
        break;
      }
      case 5: {  // duplicate a slice somewhere else
        const size_t a = pick(text.size());
        const size_t len = 1 + pick(std::min<size_t>(40, text.size() - a));
        text.insert(pick(text.size() + 1), text.substr(a, len));
        break;
      }
      default:  // flip a byte
        text[pick(text.size())] ^= char(1 + rng() % 255);
        break;
    }
  }
  return text;
}

TEST(ParserFuzz, SafetensorsByteFlips) {
  std::string header, data;
  base_safetensors(&header, &data);
  const std::string base = with_length(header, header.size(), data);
  check_safetensors(base);
  std::mt19937 rng(1234);
  g_accepted = 0;
  for (int i = 0; i < kIterations; ++i) {
    std::string buf = base;
    const int flips = 1 + int(rng() % 8);
    for (int f = 0; f < flips; ++f) {
      // Mostly the header (where the structure is), sometimes the length or data.
      const size_t at = (rng() % 4 != 0) ? 8 + rng() % header.size() : rng() % buf.size();
      buf[at] ^= char(1 + rng() % 255);
    }
    check_safetensors(buf);
    if (HasFatalFailure()) return;
  }
  RecordProperty("accepted", g_accepted);
}

TEST(ParserFuzz, SafetensorsTruncations) {
  std::string header, data;
  base_safetensors(&header, &data);
  const std::string base = with_length(header, header.size(), data);
  std::mt19937 rng(99);
  g_accepted = 0;
  for (int i = 0; i < kIterations; ++i) {
    std::string buf = base.substr(0, rng() % (base.size() + 1));
    if (rng() % 2 == 0 && !buf.empty()) buf[rng() % buf.size()] ^= char(1 + rng() % 255);
    check_safetensors(buf);
    if (HasFatalFailure()) return;
  }
  RecordProperty("accepted", g_accepted);
}

TEST(ParserFuzz, SafetensorsHeaderLengths) {
  std::string header, data;
  base_safetensors(&header, &data);
  std::mt19937_64 rng(7);
  g_accepted = 0;
  for (int i = 0; i < kIterations; ++i) {
    uint64_t n = 0;
    switch (rng() % 4) {
      case 0: n = rng(); break;                                       // anything
      case 1: n = header.size() + (rng() % 41) - 20; break;           // near the truth
      case 2: n = rng() % (header.size() + data.size() + 16); break;  // inside the file
      default: n = std::numeric_limits<uint64_t>::max() - rng() % 16; break;
    }
    check_safetensors(with_length(header, n, data));
    if (HasFatalFailure()) return;
  }
  RecordProperty("accepted", g_accepted);
}

TEST(ParserFuzz, SafetensorsMutatedJson) {
  std::string header, data;
  base_safetensors(&header, &data);
  std::mt19937 rng(2024);
  g_accepted = 0;
  for (int i = 0; i < kIterations; ++i) {
    const std::string h = mutate_json_text(header, rng);
    const uint64_t n = (rng() % 8 == 0) ? h.size() + rng() % 5 : h.size();
    std::string d = data;
    if (rng() % 4 == 0) d.resize(rng() % (data.size() + 8), '\0');
    check_safetensors(with_length(h, n, d));
    if (HasFatalFailure()) return;
  }
  RecordProperty("accepted", g_accepted);
}

const char* kLlama31 = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009],
  "head_dim": 128,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "vocab_size": 128256
})";

void check_config(const std::string& text) {
  ModelConfig c;
  const Status s = parse_model_config(text, &c);
  if (!s.ok()) {
    ASSERT_FALSE(s.message().empty());
    ASSERT_EQ(s.message().find('\n'), std::string::npos) << s.message();
    return;
  }
  ++g_accepted;
  const Status v = c.validate();
  ASSERT_TRUE(v.ok()) << v.message() << " for accepted config: " << text;
  ASSERT_GT(c.num_params(), 0);  // UBSan checks the arithmetic
  ASSERT_EQ(c.num_heads % c.num_kv_heads, 0);
}

TEST(ParserFuzz, ConfigTextMutations) {
  check_config(kLlama31);
  std::mt19937 rng(5);
  const std::string base = kLlama31;
  g_accepted = 0;
  for (int i = 0; i < kIterations; ++i) {
    std::string text;
    switch (rng() % 3) {
      case 0: text = base.substr(0, rng() % (base.size() + 1)); break;  // truncation
      case 1: {                                                         // byte flips
        text = base;
        for (int f = 1 + int(rng() % 4); f > 0; --f)
          text[rng() % text.size()] ^= char(1 + rng() % 255);
        break;
      }
      default: text = mutate_json_text(base, rng); break;
    }
    check_config(text);
    if (HasFatalFailure()) return;
  }
  RecordProperty("accepted", g_accepted);
}

TEST(ParserFuzz, ConfigTypeSwapsAndDeletions) {
  const json base = json::parse(kLlama31);
  const json values[] = {
      json(nullptr),
      json(true),
      json(false),
      json(0),
      json(-1),
      json(-4096),
      json(1),
      json(3),
      json(7.5),
      json(4096.0),
      json(1e300),
      json(-1e300),
      json(1e-45),
      json(std::numeric_limits<int64_t>::max()),
      json(std::numeric_limits<int64_t>::min()),
      json(std::numeric_limits<uint64_t>::max()),
      json(int64_t{1} << 40),
      json("llama3"),
      json("silu"),
      json("bfloat16"),
      json("yarn"),
      json(""),
      json::array(),
      json::array({1, 2}),
      json::object(),
      json::object({{"rope_type", "default"}}),
  };
  std::mt19937 rng(77);
  g_accepted = 0;
  for (int i = 0; i < kIterations; ++i) {
    json j = base;
    const int edits = 1 + int(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      // Pick the top level or the rope_scaling object, then a key in it.
      json* obj = &j;
      if (rng() % 4 == 0 && j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
        obj = &j["rope_scaling"];
      }
      if (obj->empty()) continue;
      auto it = obj->begin();
      std::advance(it, long(rng() % obj->size()));
      const std::string key = it.key();
      if (rng() % 3 == 0) {
        obj->erase(key);
      } else {
        (*obj)[key] = values[rng() % std::size(values)];
      }
    }
    check_config(j.dump());
    if (HasFatalFailure()) return;
  }
  RecordProperty("accepted", g_accepted);
}

}  // namespace
}  // namespace tidal::model
