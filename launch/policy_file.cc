// SPDX-License-Identifier: Apache-2.0
#include "launch/policy_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "runtime/file.h"

namespace tidal::launch {
namespace {

using json = nlohmann::json;

bool layer_number(const json& v, int64_t* out) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > (int64_t{1} << 20)) {
    return false;
  }
  *out = v.get<int64_t>();
  return true;
}

}  // namespace

std::string layers_label(int64_t sparse_start, const std::vector<int64_t>& reselect) {
  std::string s = std::to_string(sparse_start) + ":";
  if (reselect.empty()) return s + "-";
  for (size_t i = 0; i < reselect.size(); ++i) {
    s += (i ? "+" : "") + std::to_string(reselect[i]);
  }
  return s;
}

Status read_policy_file(const std::string& path, ModelPolicy* out) {
  std::string text;
  TIDAL_RETURN_IF_ERROR(read_file(path, &text));
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return invalid_argument(path + ": not a JSON object");
  ModelPolicy p;
  p.path = path;
  if (!j.contains("sparse_start") || !layer_number(j["sparse_start"], &p.sparse_start)) {
    return invalid_argument(path + ": 'sparse_start' must be a non-negative integer");
  }
  if (!j.contains("reselect_layers") || !j["reselect_layers"].is_array()) {
    return invalid_argument(path + ": 'reselect_layers' must be a list of layers ([] for none)");
  }
  for (const json& v : j["reselect_layers"]) {
    int64_t layer = 0;
    if (!layer_number(v, &layer)) {
      return invalid_argument(path + ": 'reselect_layers' must hold non-negative integers");
    }
    p.reselect_layers.push_back(layer);
  }
  if (j.contains("calibration") && j["calibration"].is_object()) {
    const json& c = j["calibration"];
    if (c.contains("summary") && c["summary"].is_string()) p.summary = c["summary"];
  }
  *out = std::move(p);
  return ok_status();
}

Status load_model_policy(const std::string& model_dir, ModelPolicy* out) {
  *out = ModelPolicy();
  const std::string path = model_dir + "/" + kPolicyFileName;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return ok_status();
  return read_policy_file(path, out);
}

Status write_policy_file(const std::string& path, int64_t sparse_start,
                         const std::vector<int64_t>& reselect, const std::string& calibration_json) {
  json j;
  j["sparse_start"] = sparse_start;
  j["reselect_layers"] = reselect;
  if (!calibration_json.empty()) {
    const json c = json::parse(calibration_json, nullptr, false);
    if (c.is_discarded()) return internal_error("write_policy_file: calibration is not JSON");
    j["calibration"] = c;
  }
  return write_file_atomic(path, j.dump(2) + "\n");
}

Status write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
  if (!f) return unavailable(tmp + ": cannot write");
  // The temporary file is made: a failure from here on removes it, leaving `path` as it was.
  const auto fail = [&tmp](const std::string& what) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    return unavailable(what);
  };
  errno = 0;
  f << text;
  f.close();  // flushes: a write the disk refuses fails here
  if (!f) {
    return fail(tmp + ": write failed" +
                (errno != 0 ? std::string(" (") + std::strerror(errno) + ")" : std::string()));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return fail(path + ": cannot write (" + ec.message() + ")");
  return ok_status();
}

Status check_writable(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return invalid_argument("it is a directory");
  const std::string tmp = path + ".tmp";
  const bool existed = std::filesystem::exists(tmp, ec);
  errno = 0;
  if (!std::ofstream(tmp, std::ios::binary | std::ios::app)) {
    return unavailable(std::string("cannot write it: ") +
                       (errno != 0 ? std::strerror(errno) : "cannot open " + tmp));
  }
  if (!existed) std::filesystem::remove(tmp, ec);
  return ok_status();
}

Status apply_model_policy(const ModelPolicy& file, bool layers_given,
                          const model::ModelConfig& config, model::AttentionPolicy* policy) {
  if (!file.found() || layers_given || policy->kind != model::AttentionKind::kTidal) {
    return ok_status();
  }
  policy->tidal.sparse_start = file.sparse_start;
  policy->tidal.reselect_layers = file.reselect_layers;
  const Status st = policy->validate(config, policy->quest.page_size);
  if (!st.ok()) {
    return invalid_argument(file.path + " does not fit this model (" + st.message() +
                            "): run tidal calibrate again, or give --sparse-start and "
                            "--reselect-layers");
  }
  return ok_status();
}

}  // namespace tidal::launch
