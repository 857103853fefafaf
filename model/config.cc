// SPDX-License-Identifier: Apache-2.0
// ModelConfig from config.json (Hub files, transformers 4.x `rope_scaling` / `torch_dtype`,
// transformers 5 `rope_parameters` / `dtype`), the named presets, validation and the parameter
// count. Every JSON value is type-checked before use; errors are one line naming the key.
#include "model/config.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "runtime/check.h"
#include "runtime/file.h"

namespace tidal::model {
namespace {

using json = nlohmann::json;

// Sanity bounds per size: far above any published model (the largest Llama has 126 layers, 128
// heads, hidden 16384, inter 53248, a 128K vocabulary and a 10M context), low enough that every
// product the engine plans from them fits in int64, and checked before anything is sized from
// them (a config.json with 10^8 layers is an error here, not a std::bad_alloc later).
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxHidden = int64_t{1} << 17;
constexpr int64_t kMaxInter = int64_t{1} << 20;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxHeadDim = 1024;
constexpr int64_t kMaxContext = int64_t{1} << 28;
constexpr double kMaxParams = 1e15;

std::string short_dump(const json& v) {
  return printable(v.dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace), 60);
}

// `label` names the value in messages ("config.json: 'hidden_size'").
Status json_to_int(const json& v, const std::string& label, int64_t* out) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int64_t>::max())) {
      return invalid_argument(label + " is too large");
    }
    *out = int64_t(u);
    return ok_status();
  }
  if (v.is_number_integer()) {
    *out = v.get<int64_t>();
    return ok_status();
  }
  if (v.is_number_float()) {  // 4096.0 is accepted; 4096.5 is not
    const double d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9.0e18) {
      return invalid_argument(label + " must be an integer, got " + short_dump(v));
    }
    *out = int64_t(d);
    return ok_status();
  }
  return invalid_argument(label + " must be an integer, got " + v.type_name());
}

// Reads typed values from one JSON object; `where` prefixes messages ("config.json" or
// "config.json: rope_scaling").
class Reader {
 public:
  Reader(const json& obj, std::string where, std::string key_prefix)
      : obj_(obj), where_(std::move(where)), key_prefix_(std::move(key_prefix)) {}

  // Absent and null both count as absent.
  bool has(const char* key) const {
    const auto it = obj_.find(key);
    return it != obj_.end() && !it->is_null();
  }

  Status error(const char* key, const std::string& problem) const {
    return invalid_argument(where_ + ": '" + key_prefix_ + key + "' " + problem);
  }

  Status get_int(const char* key, int64_t* out) const {
    return json_to_int(obj_.at(key), where_ + ": '" + key_prefix_ + key + "'", out);
  }

  Status require_int(const char* key, int64_t* out) const {
    if (!has(key)) return error(key, "is missing");
    return get_int(key, out);
  }

  // Leaves *out alone when absent.
  Status optional_int(const char* key, int64_t* out) const {
    return has(key) ? get_int(key, out) : ok_status();
  }

  Status optional_float(const char* key, float* out) const {
    if (!has(key)) return ok_status();
    const json& v = obj_.at(key);
    if (!v.is_number()) return error(key, std::string("must be a number, got ") + v.type_name());
    const double d = v.get<double>();
    if (!std::isfinite(d) || std::fabs(d) > double(std::numeric_limits<float>::max())) {
      return error(key, "is out of range: " + short_dump(v));
    }
    // Below float's normal range the value would become 0 or a denormal (which .ftz and
    // fast-math code read as 0), and later checks would see a number the file does not hold.
    if (d != 0.0 && std::fabs(d) < double(std::numeric_limits<float>::min())) {
      return error(key, "is out of range: " + short_dump(v) + " is too small for a float");
    }
    *out = float(d);
    return ok_status();
  }

  Status require_float(const char* key, float* out) const {
    if (!has(key)) return error(key, "is missing");
    return optional_float(key, out);
  }

  Status optional_bool(const char* key, bool* out) const {
    if (!has(key)) return ok_status();
    const json& v = obj_.at(key);
    if (!v.is_boolean())
      return error(key, std::string("must be true or false, got ") + v.type_name());
    *out = v.get<bool>();
    return ok_status();
  }

  // *present tells whether the key was there (non-null).
  Status optional_string(const char* key, std::string* out, bool* present) const {
    *present = has(key);
    if (!*present) return ok_status();
    const json& v = obj_.at(key);
    if (!v.is_string()) return error(key, std::string("must be a string, got ") + v.type_name());
    *out = v.get<std::string>();
    return ok_status();
  }

 private:
  const json& obj_;
  std::string where_;
  std::string key_prefix_;
};

Status to_token_id(const Reader& r, const char* key, int64_t v, int32_t* out) {
  if (v < 0 || v > std::numeric_limits<int32_t>::max()) {
    return r.error(key, "holds an invalid token id " + std::to_string(v));
  }
  *out = int32_t(v);
  return ok_status();
}

// rope_scaling (transformers 4) or rope_parameters (transformers 5): {"rope_type" | "type",
// and for llama3: factor, low_freq_factor, high_freq_factor, original_max_position_embeddings};
// rope_parameters also holds rope_theta.
Status parse_rope(const json& v, const std::string& where, const char* key, RopeConfig* rope) {
  if (!v.is_object()) {
    return invalid_argument(where + ": '" + key + "' must be an object or null, got " +
                            v.type_name());
  }
  const Reader r(v, where, std::string(key) + ".");
  TIDAL_RETURN_IF_ERROR(r.optional_float("rope_theta", &rope->theta));
  std::string type;
  bool has_type = false;
  TIDAL_RETURN_IF_ERROR(r.optional_string("rope_type", &type, &has_type));
  if (!has_type) TIDAL_RETURN_IF_ERROR(r.optional_string("type", &type, &has_type));
  if (!has_type) {
    // A bare {"rope_theta": ...} is plain RoPE; anything else must say what it is.
    if (v.size() == (v.contains("rope_theta") ? 1u : 0u)) return ok_status();
    return r.error("rope_type", "is missing");
  }
  if (type == "default") {
    rope->type = RopeType::kDefault;
    return ok_status();
  }
  if (type != "llama3") {
    return r.error("rope_type",
                   "'" + printable(type, 40) + "' is not supported (supported: default, llama3)");
  }
  rope->type = RopeType::kLlama3;
  TIDAL_RETURN_IF_ERROR(r.require_float("factor", &rope->factor));
  TIDAL_RETURN_IF_ERROR(r.require_float("low_freq_factor", &rope->low_freq_factor));
  TIDAL_RETURN_IF_ERROR(r.require_float("high_freq_factor", &rope->high_freq_factor));
  return r.require_int("original_max_position_embeddings", &rope->original_max_position_embeddings);
}

Status parse_dtype(const Reader& r, const char* key, const std::string& s, DType* out) {
  if (s == "float32") {
    *out = DType::kF32;
  } else if (s == "float16") {
    *out = DType::kF16;
  } else if (s == "bfloat16") {
    *out = DType::kBF16;
  } else {
    return r.error(
        key, "'" + printable(s, 40) + "' is not supported (supported: float32, float16, bfloat16)");
  }
  return ok_status();
}

Status parse_fields(const json& j, const std::string& where, ModelConfig* c) {
  if (!j.is_object()) {
    return invalid_argument(where + ": must hold a JSON object, got " + j.type_name());
  }
  const Reader r(j, where, "");

  // The architecture: Llama only.
  std::string model_type;
  bool has_model_type = false;
  TIDAL_RETURN_IF_ERROR(r.optional_string("model_type", &model_type, &has_model_type));
  if (has_model_type && model_type != "llama") {
    return r.error("model_type",
                   "'" + printable(model_type, 40) + "' is not supported (only 'llama')");
  }
  if (!has_model_type) {
    bool llama = false;
    if (r.has("architectures")) {
      const json& a = j.at("architectures");
      if (!a.is_array()) return r.error("architectures", "must be a list of strings");
      for (const json& e : a) llama = llama || (e.is_string() && e == "LlamaForCausalLM");
    }
    if (!llama) {
      return r.error("model_type", "is missing and 'architectures' does not name LlamaForCausalLM");
    }
  }
  std::string act;
  bool has_act = false;
  TIDAL_RETURN_IF_ERROR(r.optional_string("hidden_act", &act, &has_act));
  if (has_act && act != "silu") {
    return r.error("hidden_act", "'" + printable(act, 40) + "' is not supported (only 'silu')");
  }
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    bool bias = false;
    TIDAL_RETURN_IF_ERROR(r.optional_bool(key, &bias));
    if (bias) return r.error(key, "is true: biased projections are not supported");
  }

  // Shapes.
  TIDAL_RETURN_IF_ERROR(r.require_int("vocab_size", &c->vocab));
  TIDAL_RETURN_IF_ERROR(r.require_int("hidden_size", &c->hidden));
  TIDAL_RETURN_IF_ERROR(r.require_int("intermediate_size", &c->inter));
  TIDAL_RETURN_IF_ERROR(r.require_int("num_hidden_layers", &c->num_layers));
  TIDAL_RETURN_IF_ERROR(r.require_int("num_attention_heads", &c->num_heads));
  TIDAL_RETURN_IF_ERROR(r.require_int("max_position_embeddings", &c->max_position_embeddings));
  c->num_kv_heads = c->num_heads;  // absent: MHA (Llama-2)
  TIDAL_RETURN_IF_ERROR(r.optional_int("num_key_value_heads", &c->num_kv_heads));
  if (r.has("head_dim")) {
    TIDAL_RETURN_IF_ERROR(r.get_int("head_dim", &c->head_dim));
  } else {
    if (c->num_heads <= 0) {
      return r.error("num_attention_heads",
                     "must be positive, got " + std::to_string(c->num_heads));
    }
    if (c->hidden % c->num_heads != 0) {
      return invalid_argument(where + ": 'hidden_size' " + std::to_string(c->hidden) +
                              " is not divisible by 'num_attention_heads' " +
                              std::to_string(c->num_heads) + " and 'head_dim' is absent");
    }
    c->head_dim = c->hidden / c->num_heads;
  }

  // Numerics. transformers' LlamaConfig default eps is 1e-6.
  c->rms_norm_eps = 1e-6f;
  TIDAL_RETURN_IF_ERROR(r.optional_float("rms_norm_eps", &c->rms_norm_eps));
  c->rope = RopeConfig();
  TIDAL_RETURN_IF_ERROR(r.optional_float("rope_theta", &c->rope.theta));
  if (r.has("rope_parameters")) {  // transformers 5: wins over rope_scaling
    TIDAL_RETURN_IF_ERROR(parse_rope(j.at("rope_parameters"), where, "rope_parameters", &c->rope));
  } else if (r.has("rope_scaling")) {
    TIDAL_RETURN_IF_ERROR(parse_rope(j.at("rope_scaling"), where, "rope_scaling", &c->rope));
  }
  c->tie_word_embeddings = false;
  TIDAL_RETURN_IF_ERROR(r.optional_bool("tie_word_embeddings", &c->tie_word_embeddings));
  std::string dtype;
  bool has_dtype = false;
  const char* dtype_key = "dtype";  // transformers 5; older files say torch_dtype
  TIDAL_RETURN_IF_ERROR(r.optional_string(dtype_key, &dtype, &has_dtype));
  if (!has_dtype) {
    dtype_key = "torch_dtype";
    TIDAL_RETURN_IF_ERROR(r.optional_string(dtype_key, &dtype, &has_dtype));
  }
  if (has_dtype) TIDAL_RETURN_IF_ERROR(parse_dtype(r, dtype_key, dtype, &c->dtype));

  // Special tokens: bos an int or null; eos an int, a list of ints, or null.
  c->bos_token_id = -1;
  if (r.has("bos_token_id")) {
    int64_t bos = 0;
    TIDAL_RETURN_IF_ERROR(r.get_int("bos_token_id", &bos));
    TIDAL_RETURN_IF_ERROR(to_token_id(r, "bos_token_id", bos, &c->bos_token_id));
  }
  c->eos_token_ids.clear();
  if (r.has("eos_token_id")) {
    const json& eos = j.at("eos_token_id");
    if (eos.is_array()) {
      for (size_t i = 0; i < eos.size(); ++i) {
        int64_t id = 0;
        TIDAL_RETURN_IF_ERROR(
            json_to_int(eos[i], where + ": 'eos_token_id[" + std::to_string(i) + "]'", &id));
        int32_t id32 = 0;
        TIDAL_RETURN_IF_ERROR(to_token_id(r, "eos_token_id", id, &id32));
        c->eos_token_ids.push_back(id32);
      }
    } else {
      int64_t id = 0;
      TIDAL_RETURN_IF_ERROR(r.get_int("eos_token_id", &id));
      int32_t id32 = 0;
      TIDAL_RETURN_IF_ERROR(to_token_id(r, "eos_token_id", id, &id32));
      c->eos_token_ids.push_back(id32);
    }
  }
  return ok_status();
}

Status parse_text(const std::string& text, const std::string& where, ModelConfig* out) {
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    return invalid_argument(where + ": not valid JSON: " + printable(e.what()));
  }
  ModelConfig c;
  c.name = out->name;
  try {
    TIDAL_RETURN_IF_ERROR(parse_fields(j, where, &c));
  } catch (const std::exception& e) {  // a type check missed above; still no exception escapes
    return invalid_argument(where + ": " + printable(e.what()));
  }
  const Status s = c.validate();
  if (!s.ok()) return invalid_argument(where + ": " + s.message());
  *out = std::move(c);
  return ok_status();
}

std::string field(const char* name, int64_t v, const char* key) {
  return std::string(name) + " " + std::to_string(v) + " ('" + key + "')";
}

// "1e-30", "0.5", "nan": %g, so a small value is not shown as 0.000000.
std::string float_text(float v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", double(v));
  return buf;
}

// Parameters the sizes give, in double (any int64 sizes: no overflow; a negative one counts 0).
double estimated_params(const ModelConfig& c) {
  auto d = [](int64_t v) { return v > 0 ? double(v) : 0.0; };
  const double h = d(c.hidden), q = d(c.num_heads) * d(c.head_dim),
               kv = d(c.num_kv_heads) * d(c.head_dim);
  const double per_layer = h * q * 2 + h * kv * 2 + 3 * h * d(c.inter) + 2 * h;
  return d(c.vocab) * h * 2 + d(c.num_layers) * per_layer + h;
}

// "; its weights alone would take ~3.2e+16 bytes (29.1 PiB in bf16)", for a size out of range.
std::string weight_bytes_note(const ModelConfig& c) {
  const double bytes = estimated_params(c) * double(dtype_size(c.dtype));
  if (!(bytes > 0)) return "";
  char buf[96];
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"};
  double v = bytes;
  int u = 0;
  while (v >= 1024.0 && u < 8) {
    v /= 1024.0;
    ++u;
  }
  std::snprintf(buf, sizeof(buf), "; its weights alone would take ~%.3g bytes (%.1f %s in %s)",
                bytes, v, units[u], dtype_name(c.dtype));
  return buf;
}

}  // namespace

Status ModelConfig::validate() const {
  const struct {
    const char* name;
    const char* key;
    int64_t value;
    int64_t max;
  } sizes[] = {
      {"vocab", "vocab_size", vocab, kMaxVocab},
      {"hidden", "hidden_size", hidden, kMaxHidden},
      {"inter", "intermediate_size", inter, kMaxInter},
      {"num_layers", "num_hidden_layers", num_layers, kMaxLayers},
      {"num_heads", "num_attention_heads", num_heads, kMaxHeads},
      {"num_kv_heads", "num_key_value_heads", num_kv_heads, kMaxHeads},
      {"head_dim", "head_dim", head_dim, kMaxHeadDim},
      {"max_position_embeddings", "max_position_embeddings", max_position_embeddings, kMaxContext},
  };
  for (const auto& s : sizes) {
    if (s.value <= 0) return invalid_argument(field(s.name, s.value, s.key) + " must be positive");
    if (s.value > s.max) {
      const bool weights = s.value != max_position_embeddings;  // every other size shapes them
      return invalid_argument(field(s.name, s.value, s.key) + " is out of range: at most " +
                              std::to_string(s.max) + ", far above any published model" +
                              (weights ? weight_bytes_note(*this) : ""));
    }
  }
  if (num_heads % num_kv_heads != 0) {
    return invalid_argument(field("num_heads", num_heads, "num_attention_heads") +
                            " is not a multiple of " +
                            field("num_kv_heads", num_kv_heads, "num_key_value_heads"));
  }
  if (head_dim % 2 != 0) {
    return invalid_argument(field("head_dim", head_dim, "head_dim") + " must be even for RoPE");
  }
  if (!(rms_norm_eps > 0.0f) || !std::isfinite(rms_norm_eps)) {
    return invalid_argument("rms_norm_eps " + float_text(rms_norm_eps) +
                            " must be positive and finite");
  }
  // RoPE's inverse frequencies are theta^(-2i/head_dim): a base at or below 1 flattens or inverts
  // them, and a tiny one makes them huge (with 1e-35 the angle at position 131071 is inf in f32).
  if (!(rope.theta > 1.0f) || !std::isfinite(rope.theta)) {
    return invalid_argument("rope_theta " + float_text(rope.theta) +
                            " must be greater than 1 and finite (RoPE's base: 10000 for Llama-2, "
                            "500000 for Llama-3)");
  }
  if (rope.type == RopeType::kLlama3) {
    // `factor` divides the low frequencies (context extension): below 1 it multiplies them, and
    // 1e-30 makes them ~1e30. transformers warns below 1 ("factor field must be a float >= 1").
    if (!(rope.factor >= 1.0f) || !std::isfinite(rope.factor)) {
      return invalid_argument("llama3 rope scaling: factor " + float_text(rope.factor) +
                              " must be at least 1");
    }
    // low_freq_factor divides original_max_position_embeddings into the low-band wavelength.
    if (!(rope.low_freq_factor > 0.0f) || !std::isfinite(rope.low_freq_factor)) {
      return invalid_argument("llama3 rope scaling: low_freq_factor " +
                              float_text(rope.low_freq_factor) + " must be positive");
    }
    if (!(rope.high_freq_factor > rope.low_freq_factor) || !std::isfinite(rope.high_freq_factor)) {
      return invalid_argument("llama3 rope scaling: high_freq_factor " +
                              float_text(rope.high_freq_factor) + " must exceed low_freq_factor " +
                              float_text(rope.low_freq_factor));
    }
    if (rope.original_max_position_embeddings <= 0 ||
        rope.original_max_position_embeddings > kMaxContext) {
      return invalid_argument("llama3 rope scaling: original_max_position_embeddings " +
                              std::to_string(rope.original_max_position_embeddings) +
                              " is out of range");
    }
  } else if (rope.type != RopeType::kDefault) {
    return invalid_argument("unknown rope type " + std::to_string(int(rope.type)));
  }
  if (bos_token_id < -1 || bos_token_id >= vocab) {
    return invalid_argument("bos_token_id " + std::to_string(bos_token_id) +
                            " is outside the vocabulary of " + std::to_string(vocab));
  }
  for (int32_t id : eos_token_ids) {
    if (id < 0 || id >= vocab) {
      return invalid_argument("eos_token_id " + std::to_string(id) +
                              " is outside the vocabulary of " + std::to_string(vocab));
    }
  }
  switch (dtype) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16: break;
    default:
      return invalid_argument(std::string("dtype ") + dtype_name(dtype) +
                              " is not a checkpoint dtype (float32, float16, bfloat16)");
  }
  // A double estimate (no overflow) that bounds num_params().
  const double total = estimated_params(*this);
  if (total > kMaxParams) {
    return invalid_argument("the sizes give an implausible " + std::to_string(total) +
                            " parameters");
  }
  return ok_status();
}

int64_t ModelConfig::num_params() const {
  const int64_t per_layer = hidden * q_dim()                     // q_proj
                            + 2 * hidden * kv_dim()              // k_proj, v_proj
                            + q_dim() * hidden                   // o_proj
                            + 2 * hidden * inter                 // gate_proj, up_proj
                            + inter * hidden                     // down_proj
                            + 2 * hidden;                        // input and post-attention RMSNorm
  int64_t n = vocab * hidden + num_layers * per_layer + hidden;  // embeddings, layers, final norm
  if (!tie_word_embeddings) n += vocab * hidden;                 // lm_head
  return n;
}

Status parse_model_config(const std::string& json_text, ModelConfig* out) {
  return parse_text(json_text, "config.json", out);
}

Status load_model_config(const std::string& dir, ModelConfig* out) {
  const std::string path = dir + "/config.json";
  std::string text;
  TIDAL_RETURN_IF_ERROR(read_file(path, &text));
  ModelConfig c;
  c.name = dir;
  TIDAL_RETURN_IF_ERROR(parse_text(text, path, &c));
  *out = std::move(c);
  return ok_status();
}

std::vector<std::string> model_config_preset_names() {
  return {"llama2-7b", "llama3-8b", "llama3.1-8b", "llama-64l"};
}

ModelConfig tiny_smoke_config() {
  ModelConfig c;
  TIDAL_CHECK(model_config_preset("llama3-8b", &c).ok(), "llama3-8b preset missing");
  c.name = "tiny";
  c.vocab = 4096;
  c.hidden = 256;
  c.inter = 768;
  c.num_layers = 4;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 32;
  c.max_position_embeddings = 4096;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

Status model_config_preset(const std::string& name, ModelConfig* out) {
  ModelConfig c;
  c.name = name;
  if (name == "llama2-7b") {
    c.vocab = 32000;
    c.hidden = 4096;
    c.inter = 11008;
    c.num_layers = 32;
    c.num_heads = 32;
    c.num_kv_heads = 32;
    c.head_dim = 128;
    c.max_position_embeddings = 4096;
    c.rms_norm_eps = 1e-5f;
    c.rope.theta = 10000.0f;
    c.bos_token_id = 1;
    c.eos_token_ids = {2};
    c.dtype = DType::kF16;
  } else if (name == "llama3-8b" || name == "llama3.1-8b" || name == "llama-64l") {
    c.vocab = 128256;
    c.hidden = 4096;
    c.inter = 14336;
    c.num_layers = 32;
    c.num_heads = 32;
    c.num_kv_heads = 8;
    c.head_dim = 128;
    c.max_position_embeddings = 8192;
    c.rms_norm_eps = 1e-5f;
    c.rope.theta = 500000.0f;
    c.bos_token_id = 128000;
    c.eos_token_ids = {128001, 128009};  // <|end_of_text|>, <|eot_id|>
    c.dtype = DType::kBF16;
    if (name == "llama3.1-8b") {
      c.max_position_embeddings = 131072;
      c.rope.type = RopeType::kLlama3;
      c.rope.factor = 8.0f;
      c.rope.low_freq_factor = 1.0f;
      c.rope.high_freq_factor = 4.0f;
      c.rope.original_max_position_embeddings = 8192;
      c.eos_token_ids = {128001, 128008, 128009};  // + <|eom_id|>
    } else if (name == "llama-64l") {
      c.num_layers = 64;
      c.max_position_embeddings = 131072;
    }
  } else {
    std::string known;
    for (const std::string& n : model_config_preset_names())
      known += (known.empty() ? "" : ", ") + n;
    return not_found("unknown model preset '" + printable(name, 40) + "' (known: " + known + ")");
  }
  TIDAL_CHECK(c.validate().ok(), "model_config_preset: preset " + name + " is invalid");
  *out = std::move(c);
  return ok_status();
}

}  // namespace tidal::model
