// SPDX-License-Identifier: Apache-2.0
// Safetensors: header parsing with every field checked against the buffer (length, JSON shape,
// dtype, dims, byte counts, bounds, overlaps, duplicate names), the mmap-backed file, and the
// single-file or sharded checkpoint directory.
#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <utility>

#include "runtime/file.h"

namespace tidal::model {
namespace {

using json = nlohmann::json;

// As the reference implementation: a header over 100 MB is not a real checkpoint.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

bool parse_dtype(const std::string& s, DType* out) {
  static const std::pair<const char*, DType> kTable[] = {
      {"F32", DType::kF32}, {"F16", DType::kF16}, {"BF16", DType::kBF16}, {"I32", DType::kI32},
      {"I64", DType::kI64}, {"U8", DType::kU8},   {"BOOL", DType::kU8},
  };
  for (const auto& [name, dtype] : kTable) {
    if (s == name) {
      *out = dtype;
      return true;
    }
  }
  return false;
}

// A non-negative integer that fits in int64 (JSON integers only: 3.0 is not a dim).
bool as_index(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
  } else if (v.is_number_integer()) {
    const auto i = v.get<int64_t>();
    if (i < 0) return false;
    *out = uint64_t(i);
  } else {
    return false;
  }
  return *out <= uint64_t(std::numeric_limits<int64_t>::max());
}

struct Entry {
  SafetensorsTensor tensor;
  uint64_t begin = 0, end = 0;  // relative to the data section
};

Status parse_entry(const std::string& file, const std::string& name, const json& v,
                   uint64_t data_size, Entry* e) {
  const std::string where = file + ": tensor '" + printable(name) + "': ";
  if (!v.is_object()) return invalid_argument(where + "entry must be an object");
  const auto dtype_it = v.find("dtype");
  const auto shape_it = v.find("shape");
  const auto offsets_it = v.find("data_offsets");
  if (dtype_it == v.end() || !dtype_it->is_string()) {
    return invalid_argument(where + "'dtype' is missing or not a string");
  }
  if (shape_it == v.end() || !shape_it->is_array()) {
    return invalid_argument(where + "'shape' is missing or not a list");
  }
  if (offsets_it == v.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
    return invalid_argument(where + "'data_offsets' is missing or not a [begin, end] pair");
  }
  SafetensorsTensor& t = e->tensor;
  t.name = name;
  t.file = file;
  const std::string dtype = dtype_it->get<std::string>();
  if (!parse_dtype(dtype, &t.dtype)) {
    return invalid_argument(where + "dtype '" + printable(dtype, 20) +
                            "' is not supported (F32, F16, BF16, I32, I64, U8, BOOL)");
  }
  if (shape_it->size() > 16) {
    return invalid_argument(where + "rank " + std::to_string(shape_it->size()) + " is too large");
  }
  // numel * dtype_size in unsigned arithmetic with explicit overflow checks.
  uint64_t nbytes = dtype_size(t.dtype);
  for (const json& d : *shape_it) {
    uint64_t dim = 0;
    if (!as_index(d, &dim)) {
      // A list or object is named, not dumped: dump() recurses once per level of nesting.
      const std::string shown =
          d.is_structured() ? std::string("a nested ") + d.type_name()
                            : printable(d.dump(-1, ' ', true, json::error_handler_t::replace), 40);
      return invalid_argument(where + "shape holds " + shown + ", not a non-negative integer");
    }
    if (dim != 0 && nbytes > std::numeric_limits<uint64_t>::max() / dim) {
      return invalid_argument(where + "shape is too large (byte count overflows)");
    }
    nbytes *= dim;
    t.shape.push_back(int64_t(dim));
  }
  if (!as_index((*offsets_it)[0], &e->begin) || !as_index((*offsets_it)[1], &e->end)) {
    return invalid_argument(where + "data_offsets must be non-negative integers");
  }
  if (e->end < e->begin) {
    return invalid_argument(where + "data_offsets end " + std::to_string(e->end) +
                            " is before begin " + std::to_string(e->begin));
  }
  if (e->end > data_size) {
    return invalid_argument(where + "data_offsets end " + std::to_string(e->end) +
                            " is beyond the data section (" + std::to_string(data_size) +
                            " bytes); the file is truncated or corrupt");
  }
  if (e->end - e->begin != nbytes) {
    return invalid_argument(where + "data_offsets span " + std::to_string(e->end - e->begin) +
                            " bytes but shape and dtype need " + std::to_string(nbytes));
  }
  t.nbytes = size_t(nbytes);  // <= data_size, which fits in size_t
  return ok_status();
}

bool is_regular_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

Status parse_safetensors(const uint8_t* data, size_t size, const std::string& file_name,
                         std::vector<SafetensorsTensor>* out) {
  if (size < 8) {
    return invalid_argument(file_name + ": " + std::to_string(size) +
                            " bytes is too short for a safetensors file (8-byte header length)");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];  // little-endian
  if (header_len > size - 8) {
    return invalid_argument(file_name + ": header length " + std::to_string(header_len) +
                            " exceeds the file (" + std::to_string(size) +
                            " bytes); truncated or not a safetensors file");
  }
  if (header_len > kMaxHeaderBytes) {
    return invalid_argument(file_name + ": header length " + std::to_string(header_len) +
                            " is over the 100 MB limit");
  }
  const char* header = reinterpret_cast<const char*>(data + 8);
  const uint8_t* data_section = data + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;

  // Duplicate top-level keys are invisible after parsing (the last wins), so the parser callback
  // records them as they are read.
  std::string duplicate;
  std::set<std::string> seen;
  const json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  json root;
  try {
    root = json::parse(header, header + header_len, on_event);
  } catch (const std::exception& e) {
    return invalid_argument(file_name + ": header is not valid JSON: " + printable(e.what()));
  }
  if (!root.is_object()) {
    return invalid_argument(file_name + ": header must be a JSON object, got " + root.type_name());
  }
  if (!duplicate.empty()) {
    return invalid_argument(file_name + ": tensor '" + printable(duplicate) +
                            "' appears twice in the header");
  }

  std::vector<Entry> entries;
  entries.reserve(root.size());
  for (const auto& [name, value] : root.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) {
        return invalid_argument(file_name + ": '__metadata__' must be an object of strings");
      }
      for (const auto& [key, v] : value.items()) {
        if (!v.is_string()) {
          return invalid_argument(file_name + ": '__metadata__' value '" + printable(key) +
                                  "' is not a string");
        }
      }
      continue;
    }
    Entry e;
    TIDAL_RETURN_IF_ERROR(parse_entry(file_name, name, value, data_size, &e));
    entries.push_back(std::move(e));
  }

  // No two tensors may share a byte. Empty tensors own no bytes and may sit anywhere in range.
  std::vector<const Entry*> by_offset;
  for (const Entry& e : entries) {
    if (e.end > e.begin) by_offset.push_back(&e);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const Entry& prev = *by_offset[i - 1];
    const Entry& cur = *by_offset[i];
    if (cur.begin < prev.end) {
      return invalid_argument(file_name + ": tensor '" + printable(cur.tensor.name) + "' bytes [" +
                              std::to_string(cur.begin) + ", " + std::to_string(cur.end) +
                              ") overlap tensor '" + printable(prev.tensor.name) + "' [" +
                              std::to_string(prev.begin) + ", " + std::to_string(prev.end) + ")");
    }
  }

  std::vector<SafetensorsTensor> tensors;
  tensors.reserve(entries.size());
  for (Entry& e : entries) {
    e.tensor.data = data_section + e.begin;
    tensors.push_back(std::move(e.tensor));
  }
  std::sort(tensors.begin(), tensors.end(),
            [](const SafetensorsTensor& a, const SafetensorsTensor& b) { return a.name < b.name; });
  *out = std::move(tensors);
  return ok_status();
}

Status SafetensorsFile::open(const std::string& path, std::unique_ptr<SafetensorsFile>* out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    const std::string msg = path + ": cannot open: " + std::strerror(err);
    return err == ENOENT ? not_found(msg) : invalid_argument(msg);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return invalid_argument(path + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return invalid_argument(path + ": not a regular file");
  }
  if (st.st_size == 0) {
    ::close(fd);
    return invalid_argument(path + ": empty file (0 bytes), not a safetensors file");
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->size_ = size_t(st.st_size);
  void* map = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) {
    return invalid_argument(path + ": mmap failed: " + std::strerror(map_err));
  }
  file->map_ = map;
  TIDAL_RETURN_IF_ERROR(
      parse_safetensors(static_cast<const uint8_t*>(map), file->size_, path, &file->tensors_));
  *out = std::move(file);
  return ok_status();
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, size_);
}

Status SafetensorsCheckpoint::open(const std::string& dir,
                                   std::unique_ptr<SafetensorsCheckpoint>* out) {
  std::unique_ptr<SafetensorsCheckpoint> ckpt(new SafetensorsCheckpoint());
  const std::string index_path = dir + "/model.safetensors.index.json";
  const std::string single_path = dir + "/model.safetensors";
  if (is_regular_file(index_path)) {
    std::string text;
    TIDAL_RETURN_IF_ERROR(read_file(index_path, &text));
    json index;
    try {
      index = json::parse(text);
    } catch (const std::exception& e) {
      return invalid_argument(index_path + ": not valid JSON: " + printable(e.what()));
    }
    const auto map_it = index.is_object() ? index.find("weight_map") : index.end();
    if (!index.is_object() || map_it == index.end() || !map_it->is_object()) {
      return invalid_argument(index_path + ": 'weight_map' is missing or not an object");
    }
    if (map_it->empty()) return invalid_argument(index_path + ": 'weight_map' is empty");
    std::map<std::string, size_t> shard_index;  // shard file name -> files_ slot
    for (const auto& [name, shard_value] : map_it->items()) {
      if (!shard_value.is_string()) {
        return invalid_argument(index_path + ": weight_map entry for '" + printable(name) +
                                "' is not a file name");
      }
      const std::string& shard = shard_value.get_ref<const std::string&>();
      if (shard.empty() || shard.find('/') != std::string::npos ||
          shard.find("..") != std::string::npos || shard.find('\0') != std::string::npos) {
        return invalid_argument(index_path + ": shard '" + printable(shard) + "' for tensor '" +
                                printable(name) + "' is not a plain file name in " + dir);
      }
      auto it = shard_index.find(shard);
      if (it == shard_index.end()) {
        std::unique_ptr<SafetensorsFile> file;
        const Status s = SafetensorsFile::open(dir + "/" + shard, &file);
        if (!s.ok()) return Status(s.code(), s.message() + " (named by " + index_path + ")");
        it = shard_index.emplace(shard, ckpt->files_.size()).first;
        ckpt->files_.push_back(std::move(file));
      }
      const std::vector<SafetensorsTensor>& tensors = ckpt->files_[it->second]->tensors();
      const auto found = std::lower_bound(
          tensors.begin(), tensors.end(), name,
          [](const SafetensorsTensor& t, const std::string& n) { return t.name < n; });
      if (found == tensors.end() || found->name != name) {
        return invalid_argument(index_path + ": tensor '" + printable(name) +
                                "' is mapped to shard '" + printable(shard) +
                                "' but that shard does not contain it");
      }
      ckpt->by_name_[name] = &*found;
    }
  } else if (is_regular_file(single_path)) {
    std::unique_ptr<SafetensorsFile> file;
    TIDAL_RETURN_IF_ERROR(SafetensorsFile::open(single_path, &file));
    for (const SafetensorsTensor& t : file->tensors()) ckpt->by_name_[t.name] = &t;
    ckpt->files_.push_back(std::move(file));
  } else {
    return not_found("no model.safetensors or model.safetensors.index.json in " + dir);
  }
  *out = std::move(ckpt);
  return ok_status();
}

const SafetensorsTensor* SafetensorsCheckpoint::find(const std::string& name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> names;
  names.reserve(by_name_.size());
  for (const auto& entry : by_name_) names.push_back(entry.first);
  return names;
}

size_t SafetensorsCheckpoint::total_bytes() const {
  size_t total = 0;
  for (const auto& entry : by_name_) total += entry.second->nbytes;
  return total;
}

}  // namespace tidal::model
