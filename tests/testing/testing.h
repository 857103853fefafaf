// SPDX-License-Identifier: Apache-2.0
// Shared test helpers: fixture paths with clean skips, random tensors, element-wise comparison.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace tidal::testing {

// Path of a fixture under ../shared (e.g. "models/stories260K/hf").
std::string shared_path(const std::string& relative);
bool shared_exists(const std::string& relative);
// Reads a whole file; fails the test (returns "") when it cannot.
std::string read_file(const std::string& path);
// A fresh empty directory under the system temp dir, unique per call.
std::string temp_dir(const std::string& tag);
void write_file(const std::string& path, const std::string& contents);

// Deterministic normal(0, scale) values (seeded std::mt19937).
std::vector<float> random_normal(size_t n, uint32_t seed, float scale = 1.0f);
HostTensor random_tensor(std::vector<int64_t> shape, uint32_t seed, float scale = 1.0f);

// Every element: |got - want| <= atol + rtol * |want|. Reports the first failing index and the
// max abs / rel error.
::testing::AssertionResult all_close(const std::vector<float>& got, const std::vector<float>& want,
                                     float atol, float rtol);
std::vector<float> to_vector(const TensorView& t);

}  // namespace tidal::testing

// Skips the current test when a ../shared fixture is missing.
#define TIDAL_SKIP_WITHOUT_SHARED(relative)                               \
  do {                                                                    \
    if (!::tidal::testing::shared_exists(relative))                       \
      GTEST_SKIP() << "fixture ../shared/" << (relative) << " is absent"; \
  } while (0)
