// SPDX-License-Identifier: Apache-2.0
// Safetensors reader: memory-maps one file or a sharded checkpoint (model.safetensors.index.json)
// and exposes each tensor as a read-only view into the mapping. Every header field (length,
// dtype, shape, data offsets) is checked against the file size before any tensor is used;
// offsets must not overlap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/dtype.h"
#include "runtime/status.h"

namespace tidal::model {

struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::kF32;  // F32, F16, BF16, I32, I64, U8 (BOOL) are understood
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // into the mapping; valid while the owner lives
  size_t nbytes = 0;              // == numel * dtype_size, checked
  std::string file;               // the file it came from, for messages
};

// Parses and validates a safetensors buffer (8-byte little-endian header length, JSON header,
// data). `data`/`size` is the whole file. Tensors come back sorted by name, pointing into `data`.
Status parse_safetensors(const uint8_t* data, size_t size, const std::string& file_name,
                         std::vector<SafetensorsTensor>* out);

// One memory-mapped .safetensors file. Move-only; unmaps on destruction.
class SafetensorsFile {
 public:
  static Status open(const std::string& path, std::unique_ptr<SafetensorsFile>* out);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }

 private:
  SafetensorsFile() = default;
  void* map_ = nullptr;
  size_t size_ = 0;
  std::vector<SafetensorsTensor> tensors_;
};

// A checkpoint directory: model.safetensors, or the shards named by
// model.safetensors.index.json (every tensor the index names must be in the shard it names).
class SafetensorsCheckpoint {
 public:
  static Status open(const std::string& dir, std::unique_ptr<SafetensorsCheckpoint>* out);

  // nullptr when absent.
  const SafetensorsTensor* find(const std::string& name) const;
  std::vector<std::string> names() const;
  size_t total_bytes() const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsTensor*> by_name_;
};

}  // namespace tidal::model
