// SPDX-License-Identifier: Apache-2.0
#include "tests/testing/testing.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "runtime/tensor_access.h"

namespace tidal::testing {

std::string shared_path(const std::string& relative) {
  return std::string(TIDAL_SHARED_DIR) + "/" + relative;
}

bool shared_exists(const std::string& relative) {
  return std::filesystem::exists(shared_path(relative));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string temp_dir(const std::string& tag) {
  static std::atomic<int> counter{0};
  const auto dir =
      std::filesystem::temp_directory_path() /
      ("tidal_test_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

void write_file(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary);
  out << contents;
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

std::vector<float> random_normal(size_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

HostTensor random_tensor(std::vector<int64_t> shape, uint32_t seed, float scale) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return HostTensor::from(std::move(shape), random_normal(size_t(n), seed, scale));
}

::testing::AssertionResult all_close(const std::vector<float>& got, const std::vector<float>& want,
                                     float atol, float rtol) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure()
           << "size mismatch: got " << got.size() << ", want " << want.size();
  }
  double max_abs = 0, max_rel = 0;
  int64_t first_bad = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(double(got[i]) - double(want[i]));
    max_abs = std::max(max_abs, err);
    if (want[i] != 0) max_rel = std::max(max_rel, err / std::fabs(double(want[i])));
    const bool bad = !(err <= atol + rtol * std::fabs(double(want[i])));  // NaN is bad
    if (bad && first_bad < 0) first_bad = int64_t(i);
  }
  if (first_bad < 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "first mismatch at " << first_bad << ": got " << got[size_t(first_bad)] << ", want "
         << want[size_t(first_bad)] << " (max abs err " << max_abs << ", max rel err " << max_rel
         << ")";
}

std::vector<float> to_vector(const TensorView& t) {
  std::vector<float> out;
  out.reserve(size_t(t.numel()));
  int64_t idx[kMaxRank] = {};
  const int64_t n = t.numel();
  for (int64_t flat = 0; flat < n; ++flat) {
    int64_t rem = flat;
    for (int d = t.rank - 1; d >= 0; --d) {
      idx[d] = rem % t.shape[d];
      rem /= t.shape[d];
    }
    out.push_back(get_f32(t, idx[0], idx[1], idx[2], idx[3]));
  }
  return out;
}

}  // namespace tidal::testing
